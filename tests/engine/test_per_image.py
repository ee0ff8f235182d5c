"""Per-image scores for the eval report: exact values, bounded memory, and the same matrix as the evaluator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refine_cli.engine.eval.evaluator import evaluate
from refine_cli.engine.eval.metrics import scores_from_matrix
from refine_cli.engine.eval.per_image import PerImageScores
from refine_cli.engine.eval.report_figures import confusion_heatmap, normalised_confusion, top_confusions
from tests.support.pictures import assert_picture


def _halves(wrong_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """8x8 label: left half class 0, right half class 1; the prediction gets `wrong_columns` of class 1 wrong."""
    label = np.zeros((8, 8), np.uint8)
    label[:, 4:] = 1
    pred = label.copy()
    pred[:, 4 : 4 + wrong_columns] = 0
    return label, pred


def test_worst_and_best_are_exact_and_only_k_images_are_kept() -> None:
    scores = PerImageScores(num_classes=3, ignore_index=255, worst=2, best=1)
    for index, wrong in enumerate([0, 2, 4, 1, 3]):
        label, pred = _halves(wrong)
        scores(f"img{index}", None, label, pred)
    ignored = np.full((8, 8), 255, np.uint8)
    scores("all_ignored", None, ignored, np.zeros_like(ignored))
    # 4 wrong columns: class 0 IoU 32/64, class 1 IoU 0 -> 0.25; 3 wrong: (32/56 + 8/32) / 2
    worst = scores.worst()
    assert [item.sample_id for item in worst] == ["img2", "img4"]
    assert worst[0].miou == pytest.approx(0.25) and worst[1].miou == pytest.approx((32 / 56 + 8 / 32) / 2)
    assert [item.sample_id for item in scores.best()] == ["img0"] and scores.best()[0].miou == 1.0
    assert len(scores._worst) == 2 and len(scores._best) == 1  # pixels of 3 images, not 6
    assert len(scores.scores) == 6 and np.isnan(scores.scores["all_ignored"][0])


def test_collected_matrix_equals_the_evaluators(tmp_path) -> None:  # noqa: ANN001
    from refine_cli.data.format.unified import UnifiedDataset
    from refine_cli.models import create_model
    from tests.support.tiny_seg import make_tiny_dataset

    dataset = UnifiedDataset(make_tiny_dataset(tmp_path, train=1, val=3, size=(32, 40)))
    torch.manual_seed(0)
    model = create_model("lw-refinenet-mobilenetv2", num_classes=3)
    collector = PerImageScores(3, 255, worst=1, best=1)
    report = evaluate(model, dataset, "val", device="cpu", progress=False, on_sample=collector)
    again = scores_from_matrix(collector.matrix.to_numpy())
    np.testing.assert_array_equal(again.iou, report.scores.iou)
    assert again.num_pixels == report.scores.num_pixels and sorted(collector.scores) == dataset.split_ids("val")
    assert collector.worst()[0].image is not None and collector.worst()[0].image.shape == (32, 40, 3)


def test_top_confusions_and_a_heatmap_that_grows_with_the_classes(tmp_path) -> None:  # noqa: ANN001
    matrix = np.array([[90, 10, 0], [30, 60, 10], [0, 0, 0]])
    names = ["road", "car", "sky"]
    assert normalised_confusion(matrix)[2].tolist() == [0, 0, 0]
    top = top_confusions(matrix, names)
    assert [(row["truth"], row["predicted"]) for row in top] == [("car", "road"), ("road", "car"), ("car", "sky")]
    assert top[0]["fraction"] == pytest.approx(0.3) and top[0]["pixels"] == 30
    rng = np.random.default_rng(0)
    big = np.diag(rng.integers(50, 100, 80)) + rng.integers(0, 5, (80, 80))
    rgb = assert_picture(confusion_heatmap(big, [f"class_{i}" for i in range(80)], tmp_path / "c.png"))
    assert min(rgb.shape[:2]) > 80 * 12  # >= 12 pixels per class and name, so 150 ADE20K names stay legible too
