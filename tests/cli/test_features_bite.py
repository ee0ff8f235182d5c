"""Promised inference/training features checked on results only the working feature produces.

Each expected result is computed here, independently of refine's inference code, straight from
the model: --msc is the mean of single-scale softmaxes, --flip the mean of the image's and the
flipped-back flipped image's, --tile the average over the documented 1/3-overlap windows, --crf
pydensecrf through `engine.crf.dense_crf`. Every test also checks that the feature changes the
result on this model, so a command that silently ignores the option fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.convert.shapes import generate_shapes
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.data.load.normalize import normalize_image
from refine_cli.models import create_model
from refine_cli.models.checkpoint import load_checkpoint, save_checkpoint
from tests.support.tiny_seg import make_tiny_dataset

MODEL = "lw-refinenet-mobilenetv2"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # a shared 2-core machine


def _run(*args: str):  # noqa: ANN202 - click Result
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def _opinionated(model: nn.Module) -> nn.Module:
    """Kaiming-initialised convs: a freshly built model predicts ~uniform softmaxes that no option changes."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.normal_(module.bias, 0.0, 0.5)
    return model


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("bite")
    data = generate_shapes(root, n=6, size=64)  # textured 64x64 images, 6 classes
    meta = UnifiedDataset(data).meta
    torch.manual_seed(0)
    checkpoint = root / "model.pt"
    save_checkpoint(
        checkpoint, model_name=MODEL, model=_opinionated(create_model(MODEL, num_classes=6)), num_classes=6,
        classes=meta.classes, palette=meta.palette,
    )  # fmt: skip
    model = load_checkpoint(checkpoint).build_model("cpu").eval()
    return {"root": root, "data": data, "ck": checkpoint, "model": model, "dataset": UnifiedDataset(data)}


# ----------------------------------------------------------------- the expected results, computed by hand
@torch.no_grad()
def _view(model: nn.Module, x: torch.Tensor, scale: float = 1.0, flip: bool = False) -> torch.Tensor:
    """Softmax of one view at the image's size: resized by `scale`, optionally mirrored and mirrored back."""
    height, width = x.shape[-2:]
    size = (round(height * scale), round(width * scale))
    if size != (height, width):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    if flip:
        x = x.flip(-1)
    logits = F.interpolate(model(x).float(), size=(height, width), mode="bilinear", align_corners=False)
    probs = torch.softmax(logits, dim=1)
    return probs.flip(-1) if flip else probs


@torch.no_grad()
def _tiled_rows(model: nn.Module, x: torch.Tensor, rows: list[tuple[int, int]]) -> torch.Tensor:
    """Full-width windows over the given row ranges; probabilities averaged where windows overlap."""
    total = torch.zeros(1, 6, *x.shape[-2:])
    count = torch.zeros(1, 1, *x.shape[-2:])
    for top, bottom in rows:
        total[:, :, top:bottom] += _view(model, x[:, :, top:bottom])
        count[:, :, top:bottom] += 1
    assert count.min() >= 1
    return total / count


# 64x64 images with --tile 40x64 and the documented 1/3 overlap: stride ceil(40 * 2/3) = 27 cannot fit a
# second window, so the last one is shifted back to end at the border: rows 0-40 and 24-64.
OPTIONS = {
    "msc": (["--msc", "0.5,1"], lambda m, x: (_view(m, x, 0.5) + _view(m, x, 1.0)) / 2),
    "flip": (["--flip"], lambda m, x: (_view(m, x) + _view(m, x, flip=True)) / 2),
    "tile": (["--tile", "40x64"], lambda m, x: _tiled_rows(m, x, [(0, 40), (24, 64)])),
}


def _input(image: np.ndarray) -> torch.Tensor:
    return normalize_image(image)[None]


# pydensecrf's demo parameters: smoothing strong enough to move several % of this random model's labels
CRF = {"iterations": 5, "bi_w": 10.0, "bi_xy_std": 80.0, "bi_rgb_std": 13.0, "pos_w": 3.0, "pos_xy_std": 3.0}
CRF_FLAGS = ["--crf", "--workers", "1"]
CRF_FLAGS += [arg for key, value in CRF.items() for arg in ("--crf-param", f"{key}={value}")]


def _crf_labels(image: np.ndarray, probs: torch.Tensor) -> np.ndarray:
    from refine_cli.engine.infer.crf import CRFParams, dense_crf

    return dense_crf(image, probs[0].numpy(), CRFParams(**CRF)).argmax(0)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.asarray(a) == np.asarray(b)).mean())


# ----------------------------------------------------------------------------------------- predict
@pytest.mark.parametrize("name", list(OPTIONS))
def test_predict_tta_option_gives_the_hand_computed_probabilities(ws: dict, tmp_path: Path, name: str) -> None:
    flags, expected_of = OPTIONS[name]
    dataset = ws["dataset"]
    sample_id = dataset.split_ids("train")[0]
    image_file = dataset.image_path(sample_id)
    x = _input(dataset.read_image(sample_id))
    _run("predict", image_file, "--checkpoint", ws["ck"], "--out", tmp_path, "--probs", "--device", "cpu", *flags)
    probs = np.load(tmp_path / f"{image_file.stem}_probs.npz")["probs"].astype(np.float32)
    expected = expected_of(ws["model"], x)[0].numpy()
    plain = _view(ws["model"], x)[0].numpy()
    assert np.abs(expected - plain).max() > 0.1  # the option matters on this model and image
    np.testing.assert_allclose(probs, expected, atol=3e-3)
    label = np.array(Image.open(tmp_path / f"{image_file.stem}.png"))
    assert _agreement(label, expected.argmax(0)) > 0.998


def test_predict_crf_refines_labels_as_pydensecrf_does(ws: dict, tmp_path: Path) -> None:
    dataset = ws["dataset"]
    sample_id = dataset.split_ids("train")[1]
    image = dataset.read_image(sample_id)
    image_file = dataset.image_path(sample_id)
    _run("predict", image_file, "--checkpoint", ws["ck"], "--out", tmp_path, "--device", "cpu", *CRF_FLAGS)
    probs = _view(ws["model"], _input(image))
    expected = _crf_labels(image, probs)
    without = probs[0].argmax(0).numpy()
    assert _agreement(expected, without) < 0.99  # the CRF moves labels on this image
    label = np.array(Image.open(tmp_path / f"{image_file.stem}.png"))
    assert _agreement(label, expected) > 0.998


def test_predict_label_map_takes_the_id_map_from_a_dataset(ws: dict, tmp_path: Path) -> None:
    """--label-ids --label-map DATA: a checkpoint without a map uses the dataset's train_id_to_label_id."""
    import shutil

    data = tmp_path / "mapped"
    shutil.copytree(ws["data"], data)
    meta = json.loads((data / "meta.json").read_text())
    id_map = [7, 8, 11, 12, 13, 17]
    meta["extra"]["train_id_to_label_id"] = id_map
    (data / "meta.json").write_text(json.dumps(meta))
    image_file = ws["dataset"].image_path(ws["dataset"].split_ids("train")[0])
    common = ["predict", image_file, "--checkpoint", ws["ck"], "--device", "cpu"]
    _run(*common, "--out", tmp_path / "plain")
    _run(*common, "--out", tmp_path / "ids", "--label-ids", "--label-map", data)
    classes = np.array(Image.open(tmp_path / "plain" / f"{image_file.stem}.png"))
    assert len(np.unique(classes)) > 1
    written = Image.open(tmp_path / "ids" / f"{image_file.stem}.png")
    assert written.mode == "L"
    np.testing.assert_array_equal(np.array(written), np.array(id_map, np.uint8)[classes])


# -------------------------------------------------------------------------------------------- eval
def _eval_labels(ws: dict, out: Path, *flags: str) -> dict[str, np.ndarray]:
    _run("eval", "--checkpoint", ws["ck"], "--data", ws["data"], "--split", "train", "--limit", "2",
         "--save-pred", out, "--device", "cpu", "--json", out.parent / "report.json", *flags)  # fmt: skip
    ids = ws["dataset"].split_ids("train")[:2]
    return {sample_id: np.array(Image.open(out / f"{sample_id}.png")) for sample_id in ids}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_eval_tta_option_scores_the_hand_computed_labels(ws: dict, tmp_path: Path, name: str) -> None:
    flags, expected_of = OPTIONS[name]
    saved = _eval_labels(ws, tmp_path / "pred", *flags)
    for sample_id, label in saved.items():
        x = _input(ws["dataset"].read_image(sample_id))
        expected = expected_of(ws["model"], x)[0].argmax(0).numpy()
        assert _agreement(expected, _view(ws["model"], x)[0].argmax(0).numpy()) < 0.99
        assert _agreement(label, expected) > 0.998, sample_id


def test_eval_crf_scores_the_pydensecrf_labels(ws: dict, tmp_path: Path) -> None:
    saved = _eval_labels(ws, tmp_path / "pred", *CRF_FLAGS)
    report = json.loads((tmp_path / "report.json").read_text())
    assert {key: report["crf"][key] for key in CRF} == CRF
    changed = 0.0
    for sample_id, label in saved.items():
        image = ws["dataset"].read_image(sample_id)
        probs = _view(ws["model"], _input(image))
        expected = _crf_labels(image, probs)
        changed += 1 - _agreement(expected, probs[0].argmax(0).numpy())
        assert _agreement(label, expected) > 0.998, sample_id
    assert changed / len(saved) > 0.03  # the CRF moved labels on these images


# ------------------------------------------------------------------------------------------- train
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), train=4, val=1, size=(40, 48))


FAST = ["--model", MODEL, "--crop", "32", "--batch", "2", "--workers", "0", "--device", "cpu",
        "--set", "data.min_short_side=null", "--val-split", "none", "--iters", "1"]  # fmt: skip


def test_train_init_starts_from_the_given_weights(tiny: Path, tmp_path: Path) -> None:
    """With a vanishing learning rate the one-step run must still hold the --init weights, not fresh ones."""
    torch.manual_seed(0)  # the seed `refine train` uses: a fresh model would equal create_model's ...
    init_model = create_model(MODEL, num_classes=3)
    with torch.no_grad():  # ... so move every weight away from it
        for parameter in init_model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    init = tmp_path / "init.pt"
    save_checkpoint(init, model_name=MODEL, model=init_model, num_classes=3)
    frozen_bn = ["--set", "model.freeze_bn=true"]  # BN statistics frozen: only the optimiser moves weights
    _run("train", "--data", tiny, "--out", tmp_path / "run", *FAST, *frozen_bn, "--init", init, "--lr", "1e-12")
    trained = load_checkpoint(tmp_path / "run" / "last.pt").state_dict
    expected = init_model.state_dict()
    assert trained.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(trained[key], value, atol=1e-6, rtol=0, msg=key)


@pytest.mark.parametrize(("amp", "dtype"), [("bf16", torch.bfloat16), ("off", torch.float32)])
def test_train_amp_runs_the_training_forward_in_that_dtype(
    tiny: Path, tmp_path: Path, amp: str, dtype: torch.dtype
) -> None:
    seen: list[torch.dtype] = []

    def record(module: nn.Module, args: object, output: object) -> None:
        if isinstance(module, nn.Conv2d) and module.training and isinstance(output, torch.Tensor):
            seen.append(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        _run("train", "--data", tiny, "--out", tmp_path / "run", *FAST, "--amp", amp)
    finally:
        handle.remove()
    assert len(seen) > 10 and set(seen) == {dtype}


# ------------------------------------------------------------------------------------------- check
def test_check_full_decodes_and_finds_a_truncated_image(tmp_path: Path) -> None:
    data = make_tiny_dataset(tmp_path, train=2, val=1, size=(32, 32))
    dataset = UnifiedDataset(data)
    victim = dataset.image_path(dataset.split_ids("train")[0])
    blob = victim.read_bytes()
    victim.write_bytes(blob[: len(blob) // 2])  # header intact, pixel data cut
    header_only = CliRunner().invoke(app, ["check", str(data), "--workers", "1"])
    assert header_only.exit_code == 0, header_only.output  # the header alone looks fine
    full = CliRunner().invoke(app, ["check", str(data), "--workers", "1", "--full"])
    assert full.exit_code == 2 and victim.name in full.output and "Traceback" not in full.output
