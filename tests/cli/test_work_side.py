"""A model trained at a working short side (large photos): its validation, `eval`, `predict` and its ONNX
export all bring large images down to that size, `--short-side` overrides it, and nonsense is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refine_cli.data.format.imageio import read_label
from refine_cli.engine.infer.onnx_backend import read_card
from tests.support.checkpoints import fitted_tiny_checkpoint
from tests.support.cli import error_line, run_cli
from tests.support.tiny_seg import make_tiny_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # a shared 2-core machine

WORK = 64  # the images are 160x200: every one is brought down to 64x80


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A run at working size WORK that keeps a fitted model's weights (--init, lr ~0, BN frozen): label maps
    of several classes whose edges move with the size each command predicts at."""
    root = tmp_path_factory.mktemp("work_side")
    data = make_tiny_dataset(root, train=4, val=2, size=(160, 200))
    init = fitted_tiny_checkpoint(root / "fitted.pt", data)
    run = root / "run"
    result = run_cli("train", "--data", data, "--out", run, "--init", init, "--lr", "1e-12", "--iters", "1",
                     "--crop", "32", "--batch", "2", "--workers", "0", "--device", "cpu",
                     "--set", "model.freeze_bn=true", "--set", "data.min_short_side=null",
                     "--set", f"data.max_short_side={WORK}", "--json", root / "train.json")  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"larger images worked at short side {WORK}" in text
    assert "note: model lw-refinenet-mobilenetv2, the --init checkpoint's" in text  # no --model needed
    return {"root": root, "data": data, "ck": run / "last.pt", "train": root / "train.json"}


def _eval(trained: dict[str, Path], *extra: str) -> dict:
    result = run_cli("eval", "--checkpoint", trained["ck"], "--data", trained["data"], "--device", "cpu", *extra,
                     "--json", "-")  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{") :])


def _predict(trained: dict[str, Path], checkpoint: Path, out: str, *extra: str) -> dict[str, np.ndarray]:
    images = trained["data"] / "images"
    result = run_cli("predict", images, "--checkpoint", checkpoint, "--out", trained["root"] / out, *extra)
    assert result.exit_code == 0, result.output
    return {path.name: read_label(path) for path in sorted((trained["root"] / out).glob("*.png"))}


def test_validation_and_eval_score_the_model_at_its_working_size(trained: dict[str, Path]) -> None:
    summary = json.loads(trained["train"].read_text())
    report, native = _eval(trained), _eval(trained, "--short-side", "native")
    assert report["short_side"] == [1, WORK] and native["short_side"] is None
    assert report["miou"] == pytest.approx(summary["last_val"]["miou"], abs=1e-9)  # validation: the same views
    assert native["miou"] != pytest.approx(report["miou"], abs=1e-6)  # ... which the working size changes
    assert native["num_pixels"] == report["num_pixels"] > 2 * 64 * 80  # scored at the labels' own size


def test_predict_and_the_onnx_file_follow_the_working_size(trained: dict[str, Path]) -> None:
    auto = _predict(trained, trained["ck"], "auto")
    assert all(label.shape == (160, 200) for label in auto.values()) and len(auto) == 6
    explicit = _predict(trained, trained["ck"], "explicit", "--short-side", str(WORK))
    native = _predict(trained, trained["ck"], "native", "--short-side", "native")
    assert all(np.array_equal(auto[name], explicit[name]) for name in auto)
    assert any(not np.array_equal(auto[name], native[name]) for name in auto)  # the size mattered
    onnx = trained["root"] / "m.onnx"
    assert run_cli("export", trained["ck"], "--out", onnx).exit_code == 0
    assert read_card(onnx).work_side == WORK
    exported = _predict(trained, onnx, "onnx")
    same = np.mean([(auto[name] == exported[name]).mean() for name in auto])
    assert same >= 0.999


def test_short_side_nonsense_is_one_line(trained: dict[str, Path]) -> None:
    base = ["eval", "--checkpoint", trained["ck"], "--data", trained["data"], "--device", "cpu"]
    assert "--short-side '5' is not auto, native or a number >= 32" in error_line(run_cli(*base, "--short-side", "5"))
    line = error_line(run_cli(*base, "--msc", "refinenet", "--short-side", "100"))
    assert "--msc refinenet brings the short side into 450-800 itself" in line


def test_the_int8_gate_scores_at_the_working_size(trained: dict[str, Path]) -> None:
    """The gate compares fp32 and int8 the way eval and predict will run the file: at the working size."""
    report_path = trained["root"] / "q.json"
    result = run_cli("export", trained["ck"], "--int8", "--calib", trained["data"], "--out", trained["root"] / "q.onnx",
                     "--force", "--json", report_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    gate = json.loads(report_path.read_text())["quantization"]["evaluation"]
    assert read_card(trained["root"] / "q.onnx").work_side == WORK
    auto, native = _eval(trained), _eval(trained, "--short-side", "native")
    assert gate["miou_fp32"] == pytest.approx(100 * auto["miou"], abs=0.5)
    assert abs(gate["miou_fp32"] - 100 * native["miou"]) > 1.0


def test_train_refusals_around_the_working_size_and_init(trained: dict[str, Path]) -> None:
    base = ["train", "--data", trained["data"], "--out", trained["root"] / "refused", "--iters", "1", "--device", "cpu"]
    line = error_line(run_cli(*base, "--set", "data.max_short_side=64", "--set", "data.min_short_side=100"))
    assert "data.max_short_side must be at least data.min_short_side" in line
    line = error_line(run_cli(*base, "--recipe", "lw-voc", "--train-split", "train", "--init",
                              trained["root"] / "fitted.pt"))  # fmt: skip
    assert "is a lw-refinenet-mobilenetv2 model, not lw-refinenet-50" in line  # a recipe's model is not replaced
    assert not (trained["root"] / "refused").exists()


def test_onnx_files_with_a_working_size_are_format_2(trained: dict[str, Path]) -> None:
    """An older refine (format 1) refuses such a file instead of predicting at the photo's own size."""
    import onnx

    def version(path: Path) -> str:
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return props["refine.format_version"]

    with_size = trained["root"] / "v2.onnx"
    assert run_cli("export", trained["ck"], "--out", with_size).exit_code == 0
    assert version(with_size) == "2"
    plain = trained["root"] / "v1.onnx"
    assert run_cli("export", trained["root"] / "fitted.pt", "--out", plain).exit_code == 0
    assert version(plain) == "1" and read_card(plain).work_side is None
