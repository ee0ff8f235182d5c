"""--msc, --flip, --tile and --crf of predict and eval give the results computed here by hand.

Each expected result is computed here, independently of refine's inference code, straight from
the model: --msc is the mean of single-scale softmaxes, --flip the mean of the image's and the
flipped-back flipped image's, --tile the average over the documented 1/3-overlap windows, --crf
pydensecrf through `engine.infer.crf.dense_crf`. Every test also checks that the feature changes the
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
from refine_cli.data.load.normalize import normalize_image
from refine_cli.models import create_model
from refine_cli.models.checkpoint import load_checkpoint, save_checkpoint
from tests.support.workspaces import ShapesWorkspace

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
def ws(shapes_workspace: ShapesWorkspace, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The shared shapes dataset and a checkpoint with opinions (Kaiming weights) for its 6 classes."""
    dataset = shapes_workspace.dataset
    torch.manual_seed(0)
    checkpoint = tmp_path_factory.mktemp("opinionated") / "model.pt"
    save_checkpoint(
        checkpoint, model_name=MODEL, model=_opinionated(create_model(MODEL, num_classes=6)), num_classes=6,
        classes=dataset.meta.classes, palette=dataset.meta.palette,
    )  # fmt: skip
    model = load_checkpoint(checkpoint).build_model("cpu").eval()
    return {"data": shapes_workspace.data, "ck": checkpoint, "model": model, "dataset": dataset}


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
