"""Per-image scores for the evaluation report, gathered through the evaluator's `on_sample` callback.

Every image is scored with the project's one metric (`metrics.ConfusionMatrix`, one small matrix per
image), so a per-image mIoU means what the dataset mIoU means: classes absent from both the image's
label and its prediction are skipped. Only the scores of all images are kept; pixels are kept only
for the current worst and best few (two bounded heaps), so a 5000-image split costs a few images of memory.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

import numpy as np

from refine_cli.engine.eval.metrics import ConfusionMatrix


@dataclass
class GalleryItem:
    """One image of the gallery: its score and the pixels at label size (image None until re-read)."""

    sample_id: str
    miou: float
    pixel_acc: float
    label: np.ndarray
    pred: np.ndarray
    image: np.ndarray | None = None


class PerImageScores:
    """The `on_sample` callback: per-image mIoU / pixel accuracy for every image, pixels for the extremes.

    It also accumulates the dataset confusion matrix (the sum of the per-image ones), which the
    report draws as a heatmap; scored the same way it equals the evaluator's own matrix.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, worst: int = 8, best: int = 4) -> None:
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.keep_worst, self.keep_best = max(0, worst), max(0, best)
        self.matrix = ConfusionMatrix(self.num_classes, self.ignore_index, device="cpu")
        self.scores: dict[str, tuple[float, float]] = {}  # id -> (mIoU, pixel accuracy); NaN if no pixel counts
        self._worst: list[tuple[float, int, GalleryItem]] = []  # max-heap on mIoU (keys negated)
        self._best: list[tuple[float, int, GalleryItem]] = []  # min-heap on mIoU
        self._order = itertools.count()

    def __call__(self, sample_id: str, image: np.ndarray | None, label: np.ndarray, pred: np.ndarray) -> None:
        one = ConfusionMatrix(self.num_classes, self.ignore_index, device="cpu")
        one.update(pred, label)
        self.matrix.merge(one)
        scores = one.compute()
        self.scores[sample_id] = (scores.miou, scores.pixel_acc)
        if math.isnan(scores.miou):
            return  # an image with every pixel ignored says nothing about the model
        item = GalleryItem(sample_id, scores.miou, scores.pixel_acc, label, pred, image)
        order = next(self._order)
        if self.keep_worst:
            _push_bounded(self._worst, (-scores.miou, order, item), self.keep_worst)
        if self.keep_best:
            _push_bounded(self._best, (scores.miou, order, item), self.keep_best)

    def worst(self) -> list[GalleryItem]:
        """The kept worst images, worst first."""
        return [entry[2] for entry in sorted(self._worst, key=lambda e: (-e[0], e[1]))]

    def best(self) -> list[GalleryItem]:
        """The kept best images not already among the worst (small splits), best first."""
        shown = {item.sample_id for item in self.worst()}
        ranked = sorted(self._best, key=lambda entry: (-entry[0], entry[1]))
        return [entry[2] for entry in ranked if entry[2].sample_id not in shown]


def _push_bounded(heap: list, entry: tuple, size: int) -> None:
    """Keep the `size` largest entries of a min-heap."""
    if len(heap) < size:
        heapq.heappush(heap, entry)
    elif entry[:2] > heap[0][:2]:
        heapq.heapreplace(heap, entry)
