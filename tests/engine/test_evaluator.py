"""Evaluator: scores at label resolution, TTA/CRF paths, saved predictions re-score identically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.data.load.normalize import normalize_image
from refine_cli.engine.eval.evaluator import evaluate, score_predictions
from refine_cli.engine.infer.loop import InferenceConfig
from refine_cli.errors import RefineError
from tests.support.workspaces import ShapesWorkspace


class _TinyNet(nn.Module):
    """Colour-driven 1/4-resolution logits, so predictions are non-trivial and deterministic."""

    def __init__(self, num_classes: int = 6) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.num_classes = num_classes
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)
        self.pool = nn.AvgPool2d(4, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


@pytest.fixture
def shapes(shapes_workspace: ShapesWorkspace) -> UnifiedDataset:
    """The session's shapes dataset (8 train / 2 val of 64 px, 6 classes): read only."""
    return shapes_workspace.dataset


def _reference_matrix(model: nn.Module, dataset: UnifiedDataset, split: str) -> np.ndarray:
    matrix = np.zeros((6, 6), dtype=np.int64)
    for sample_id in dataset.split_ids(split):
        image, label = dataset.read_image(sample_id), dataset.read_label(sample_id)
        with torch.no_grad():
            logits = model(normalize_image(image)[None])
        pred = F.interpolate(logits, size=label.shape, mode="bilinear", align_corners=False).argmax(1)[0].numpy()
        valid = label != 255
        matrix += np.bincount(label[valid].astype(int) * 6 + pred[valid], minlength=36).reshape(6, 6)
    return matrix


def test_evaluate_matches_a_plain_reference_loop(shapes: UnifiedDataset, tmp_path: Path) -> None:
    model = _TinyNet().eval()
    batched = InferenceConfig(batch_size=3)
    report = evaluate(model, shapes, "train", batched, progress=False, save_pred_dir=tmp_path / "pred")
    reference = _reference_matrix(model, shapes, "train")
    iou = np.diag(reference) / (reference.sum(0) + reference.sum(1) - np.diag(reference))
    assert report.num_images == len(shapes.split_ids("train")) == 8  # batches of 3, 3 and 2
    assert report.miou == pytest.approx(float(np.nanmean(iou)))
    assert report.scores.pixel_acc == pytest.approx(np.trace(reference) / reference.sum())
    data = report.to_json()
    for key in ("miou", "pixel_acc", "mean_acc", "fwiou"):
        assert 0.0 <= data[key] <= 1.0
    assert [row["name"] for row in data["per_class"]] == shapes.meta.classes
    assert data["scales"] == [1.0] and data["split"] == "train" and data["crf"] is None
    saved = tmp_path / "pred" / f"{shapes.split_ids('train')[0]}.png"
    assert Image.open(saved).mode == "P"
    rescored = score_predictions(tmp_path / "pred", shapes, "train", progress=False)
    assert np.array_equal(rescored.scores.iou, report.scores.iou, equal_nan=True)


def test_tta_and_crf_paths_run_and_stay_in_range(shapes: UnifiedDataset) -> None:
    pytest.importorskip("pydensecrf.densecrf", reason="pydensecrf2 is not installed")
    from refine_cli.engine.infer.crf import CRFParams

    model = _TinyNet().eval()
    config = InferenceConfig(scales=(0.75, 1.0), flip=True, tile=(32, 32), crf=CRFParams(iterations=2), workers=1)
    report = evaluate(model, shapes, "val", config, progress=False)
    assert report.settings["flip"] is True and report.settings["crf"]["iterations"] == 2
    assert 0.0 <= report.scores.pixel_acc <= 1.0 and report.num_images == 2


def test_class_count_mismatch_and_missing_split(shapes: UnifiedDataset) -> None:
    with pytest.raises(RefineError, match="predicts 4 classes"):
        evaluate(_TinyNet(4), shapes, "val", progress=False)
    with pytest.raises(RefineError, match="no split 'test'"):
        evaluate(_TinyNet(), shapes, "test", progress=False)


def test_score_predictions_errors_name_the_file(shapes: UnifiedDataset, tmp_path: Path) -> None:
    val = shapes.split_ids("val")
    pred_dir = tmp_path / "p"
    pred_dir.mkdir()
    for sample_id in val:
        Image.fromarray(shapes.read_label(sample_id).clip(0, 5)).save(pred_dir / f"{sample_id}.png")
    perfect = score_predictions(pred_dir, shapes, "val", progress=False)
    assert perfect.miou == pytest.approx(1.0) and perfect.scores.pixel_acc == pytest.approx(1.0)
    victim = pred_dir / f"{val[0]}.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(victim)
    with pytest.raises(RefineError, match=f"{val[0]}.png is 10x10"):
        score_predictions(pred_dir, shapes, "val", progress=False)
    Image.fromarray(np.full((64, 64), 9, np.uint8)).save(victim)
    with pytest.raises(RefineError, match=f"{val[0]}.png contains class 9"):
        score_predictions(pred_dir, shapes, "val", progress=False)
    victim.unlink()
    with pytest.raises(RefineError, match="1 of 2 predictions are missing"):
        score_predictions(pred_dir, shapes, "val", progress=False)
