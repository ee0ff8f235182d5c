"""A MATLAB RefineNet file, end to end through the CLI: generated .mat -> `refine convert --from matconvnet` ->
predict (the notebook protocol) / eval (the CVPR protocol) / export (ONNX) / train --init, each checked against
an independent NumPy run of the MATLAB network or against each other."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.format.imageio import read_label
from refine_cli.models.checkpoint import load_checkpoint
from tests.models import matconvnet_reference as ref
from tests.support.matconvnet_files import Variant, release_parameters, write_release_file
from tests.support.narrow_models import use_narrow_refinenet
from tests.support.tiny_seg import make_tiny_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # a shared 2-core machine
VARIANT = Variant(depth=50, improved_crp=False)  # the VOC model's original CRP, narrow ResNet-50 for speed


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("matconvnet")
    with pytest.MonkeyPatch.context() as patch:
        use_narrow_refinenet(patch)
        src = write_release_file(root / "refinenet_res50_voc2012.mat", VARIANT, seed=5)
        result = CliRunner().invoke(app, ["convert", "--from", "matconvnet", str(src), "--out", str(root / "m.pt"),
                                          "--json", "-"])  # fmt: skip
        assert result.exit_code == 0, result.output
        data = make_tiny_dataset(root, name="voc", num_classes=21, train=2, val=2, size=(43, 58))
        yield {"root": root, "src": src, "ck": root / "m.pt", "data": data, "report": json.loads(result.stdout)}


def _run(*args: str):  # noqa: ANN202 - click Result
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def _reference_labels(image: np.ndarray) -> np.ndarray:
    """The NumPy MATLAB network's scores, void dropped, resized as the notebooks do (cv2 INTER_CUBIC), argmax."""
    params, filters, biases = release_parameters(VARIANT, seed=5)
    scores = ref.refinenet_scores(image, params, filters, biases, blocks=(3, 4, 6, 3), adapt_prefix="adapt_input_path",
                                  crp_stages=4, conv_first=False)  # fmt: skip
    scores = np.delete(scores, 21, axis=2).astype(np.float32)
    return cv2.resize(scores, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_CUBIC).argmax(axis=2)


def test_convert_reports_what_it_did_and_what_was_checked(converted: dict[str, Path], tmp_path: Path) -> None:
    report = converted["report"]
    assert report["model"] == "refinenet-50" and report["num_classes"] == 21 and report["void_output"] == 21
    assert report["architecture"] == {"caffe_stride": True, "resize_mode": "matlab-bicubic", "input_scale": 1.2}
    assert "not yet against a released file" in report["checked"]
    text = _run("convert", "--from", "matconvnet", str(converted["src"]), "--out", str(tmp_path / "again.pt"))
    assert text.exit_code == 0, text.output
    assert f"sha256 {report['source_sha256']}  refinenet_res50_voc2012.mat" in text.output
    assert "not yet against a released file" in text.output and "void output 21 dropped" in text.output


def test_predict_eval_export_and_train_from_the_converted_model(converted: dict[str, Path], tmp_path: Path) -> None:
    # the fixture keeps the narrow RefineNet in place for the whole module
    ck, data = str(converted["ck"]), str(converted["data"])
    images = data + "/images"
    predicted = _run("predict", images, "--checkpoint", ck, "--out", str(tmp_path / "pt"), "--upsample", "bicubic",
                     "--device", "cpu", "--json", "-")  # fmt: skip
    assert predicted.exit_code == 0, predicted.output
    assert json.loads(predicted.stdout)["upsample"] == "bicubic"
    for image_path in sorted(Path(images).iterdir()):
        image = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
        label = read_label(tmp_path / "pt" / f"{image_path.stem}.png")
        assert (label == _reference_labels(image)).mean() >= 0.999

    evaluated = _run("eval", "--checkpoint", ck, "--data", data, "--msc", "refinenet", "--upsample", "bicubic",
                     "--device", "cpu", "--json", "-")  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads(evaluated.stdout)
    assert scores["protocol"] == "refinenet" and scores["model"] == "refinenet-50" and 0 <= scores["miou"] <= 1

    exported = _run("export", ck, "--out", str(tmp_path / "m.onnx"), "--json", "-")
    assert exported.exit_code == 0, exported.output
    card = json.loads(exported.stdout)["metadata"]
    mean = json.loads(next(value for key, value in card.items() if key.endswith(".mean")))
    std = json.loads(next(value for key, value in card.items() if key.endswith(".std")))
    assert mean == pytest.approx([128 / 255] * 3) and std == pytest.approx([1 / 255] * 3)  # 0-255 minus 128
    onnx = _run("predict", images, "--checkpoint", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "onnx"),
                "--upsample", "bicubic")  # fmt: skip
    assert onnx.exit_code == 0, onnx.output
    for label_path in (tmp_path / "pt").glob("*.png"):
        assert (read_label(label_path) == read_label(tmp_path / "onnx" / label_path.name)).mean() >= 0.999

    run = tmp_path / "run"
    trained = _run("train", "--init", ck, "--model", "refinenet-50", "--data", data, "--out", str(run), "--iters",
                   "1", "--crop", "32", "--batch", "2", "--workers", "0", "--device", "cpu", "--set",
                   "data.min_short_side=null")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    original, fine_tuned = load_checkpoint(ck), load_checkpoint(run / "last.pt")
    assert fine_tuned.architecture == original.architecture
    assert fine_tuned.normalization["mean"] == original.normalization["mean"]
