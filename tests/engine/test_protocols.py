"""The papers' test protocols: bicubic logit upsampling that agrees with OpenCV's INTER_CUBIC (the LW-RefineNet
notebooks), the `--msc refinenet` preset (scales after the MATLAB demos' short-side range, no flip), and both
recorded in the eval JSON and report."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.engine.infer.tta import MSC_PRESETS, predict_batch_probs, resolve_msc
from refine_cli.errors import RefineError
from refine_cli.models import upsample_logits
from tests.support.checkpoints import shapes_with_checkpoint


def _smooth_logits(classes: int, height: int, width: int, seed: int) -> np.ndarray:
    """Logits with the spatial structure of a real model's (smooth regions, close races at boundaries)."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((classes, max(2, height // 6), max(2, width // 6))).astype(np.float32) * 4
    return np.stack([cv2.resize(c, (width, height), interpolation=cv2.INTER_LINEAR) for c in coarse])


def _notebook_labels(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The LW-RefineNet notebooks: cv2.resize(logits HWC, (W, H), INTER_CUBIC), then argmax."""
    resized = cv2.resize(logits.transpose(1, 2, 0), (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    return resized.argmax(axis=2)


@pytest.mark.parametrize(
    ("low", "size"), [((94, 125), (375, 500)), ((117, 157), (468, 625)), ((128, 128), (512, 512)), ((13, 9), (50, 33))]
)
def test_bicubic_agrees_with_cv2_inter_cubic(low: tuple[int, int], size: tuple[int, int]) -> None:
    logits = _smooth_logits(21, *low, seed=sum(low))
    expected = _notebook_labels(logits, size)
    tensor = torch.from_numpy(logits)[None]
    ours = upsample_logits(tensor, size, "bicubic")[0]
    reference = cv2.resize(logits.transpose(1, 2, 0), (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    assert np.abs(ours.numpy().transpose(1, 2, 0) - reference).max() < 1e-3 * np.abs(reference).max()
    agreement = (ours.argmax(0).numpy() == expected).mean()
    assert agreement >= 0.9999
    bilinear = upsample_logits(tensor, size, "bilinear")[0].argmax(0).numpy()
    assert (bilinear == expected).mean() < agreement  # refine's default resize is measurably another protocol


def test_the_protocol_reaches_the_labels_of_predict_batch_probs() -> None:
    logits = torch.from_numpy(_smooth_logits(7, 30, 40, seed=3))[None]
    images = torch.zeros(1, 3, 120, 160)
    labels = predict_batch_probs(lambda _: logits, images, upsample="bicubic", labels_only=True)[0].argmax(0)
    assert (labels.numpy() == _notebook_labels(logits[0].numpy(), (120, 160))).mean() >= 0.9999
    probs = predict_batch_probs(lambda _: logits, images, upsample="bicubic")[0]  # softmax path, same labels
    assert torch.equal(probs.argmax(0), labels)


class _Recorder(torch.nn.Module):
    """Records the size of every view it is given; logits at 1/4 like the RefineNet family."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[-2:]))
        return F.avg_pool2d(x[:, :2], 4, ceil_mode=True)


@pytest.mark.parametrize(
    ("size", "views"),
    [
        ((375, 500), [(180, 240), (270, 360), (360, 480), (450, 600), (540, 720)]),  # short side 375 -> 450
        ((1000, 800), [(400, 320), (600, 480), (800, 640), (1000, 800), (1200, 960)]),  # 800 stays
        ((1200, 1000), [(384, 320), (576, 480), (768, 640), (960, 800), (1152, 960)]),  # 1000 -> 800
    ],
)
def test_refinenet_preset_scales_after_the_short_side_range(size: tuple[int, int], views: list) -> None:
    setting = resolve_msc("refinenet")
    assert setting.scales == (0.4, 0.6, 0.8, 1.0, 1.2) and setting.short_side == (450, 800)
    model = _Recorder()
    probs = predict_batch_probs(model, torch.rand(1, 3, *size), setting.scales, short_side=setting.short_side)
    assert model.sizes == views  # five views, none flipped
    assert probs.shape[-2:] == size


def test_preset_names_and_errors() -> None:
    assert resolve_msc("0.5,1").scales == (0.5, 1.0) and resolve_msc("0.5,1").preset is None
    assert resolve_msc("RefineNet-Cityscapes").short_side == (600, 1100)
    assert set(MSC_PRESETS) >= {"default", "refinenet", "refinenet-cityscapes"}
    with pytest.raises(RefineError, match="unknown --msc preset 'deeplab'"):
        resolve_msc("deeplab")


def test_eval_records_the_protocol_in_json_and_report(tmp_path: Path) -> None:
    data, checkpoint = shapes_with_checkpoint(tmp_path, 5)
    args = ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--split", "val", "--device", "cpu",
            "--msc", "refinenet", "--upsample", "bicubic", "--report", str(tmp_path / "report"),
            "--json", "-"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["protocol"] == "refinenet" and report["scales"] == [0.4, 0.6, 0.8, 1.0, 1.2]
    assert report["short_side"] == [450, 800] and report["upsample"] == "bicubic" and report["flip"] is False
    page = (tmp_path / "report" / "report.html").read_text()
    assert "refinenet" in page and "bicubic" in page and "brought into 450-800 px first" in page
    plain = CliRunner().invoke(app, ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--json", "-"])
    assert json.loads(plain.stdout)["upsample"] == "bilinear" and json.loads(plain.stdout)["protocol"] is None
    refused = CliRunner().invoke(app, ["eval", "--pred", str(tmp_path), "--data", str(data), "--upsample", "bicubic"])
    assert refused.exit_code == 2 and "--upsample needs --checkpoint" in refused.output
