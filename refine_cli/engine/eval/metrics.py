"""The one segmentation metric: a dataset-level confusion matrix and the scores derived from it.

Train's validation, `refine eval` and the scoring of saved predictions all go through
`ConfusionMatrix`, so a number printed anywhere in refine means the same thing everywhere.
Conventions (docs/evaluation.md 1.1-1.2, mmseg/FCN style): rows = ground truth, columns = prediction;
pixels labelled `ignore_index` are dropped before binning; a class absent from both the labels
and the predictions of the whole set has IoU NaN and is skipped in the means (and reported as
skipped); a class that is only predicted scores IoU 0 and counts.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from refine_cli.errors import RefineError

ArrayLike = torch.Tensor | np.ndarray


@dataclass
class Scores:
    """Scores of one confusion matrix; all values are fractions in [0, 1] (NaN where undefined)."""

    miou: float
    pixel_acc: float
    mean_acc: float
    fwiou: float
    iou: np.ndarray  # (C,) float64, NaN for a skipped class
    acc: np.ndarray  # (C,) float64 per-class recall, NaN for a class with no labelled pixel
    skipped: list[int] = field(default_factory=list)
    num_pixels: int = 0

    def per_class(self, class_names: list[str] | None = None) -> list[dict[str, Any]]:
        """One dict per class with `name`, `iou` and `acc` (None instead of NaN, for JSON)."""
        names = class_names or [f"class_{index}" for index in range(len(self.iou))]
        return [
            {"name": names[index], "iou": _nan_to_none(self.iou[index]), "acc": _nan_to_none(self.acc[index])}
            for index in range(len(self.iou))
        ]

    def summary(self) -> dict[str, Any]:
        """The headline numbers as a JSON-ready dict."""
        return {
            "miou": _nan_to_none(self.miou),
            "pixel_acc": _nan_to_none(self.pixel_acc),
            "mean_acc": _nan_to_none(self.mean_acc),
            "fwiou": _nan_to_none(self.fwiou),
            "num_pixels": self.num_pixels,
            "skipped_classes": list(self.skipped),
        }


def _nan_to_none(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _as_tensor(array: ArrayLike, what: str) -> torch.Tensor:
    if isinstance(array, np.ndarray):
        if array.dtype.kind not in "iub":
            raise RefineError(f"{what} must hold integer class indices, got dtype {array.dtype}")
        return torch.from_numpy(np.ascontiguousarray(array))
    if not isinstance(array, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor or numpy.ndarray, got {type(array).__name__}")
    if array.is_floating_point() or array.is_complex():
        raise RefineError(f"{what} must hold integer class indices, got dtype {array.dtype}")
    return array


def _flat_index(label: torch.Tensor, pred: torch.Tensor, num: int, bins: int) -> torch.Tensor:
    """label * num + pred in the narrowest integer type that holds `bins` values.

    int16 arithmetic in place beats the textbook int64 expression on the CPU (less memory traffic,
    no fresh 8-byte buffers; tools/bench_metrics.py measures scoring), which keeps scoring memory-bound.
    """
    dtype = torch.int16 if bins <= 2**15 else torch.int32 if bins <= 2**31 else torch.int64
    index = label.to(dtype, copy=True)
    index.mul_(num)
    index.add_(pred.to(dtype))
    return index


@contextlib.contextmanager
def single_threaded(device: torch.device) -> Iterator[None]:
    """Run the enclosed CPU tensor ops on one thread, then restore the thread count.

    Scoring is memory-bound: a second thread gains little on an idle machine and, when the cores
    are busy, makes each op wait for the slowest thread (tools/bench_metrics.py). The count is process-wide,
    so this is only for short stretches on the thread that also runs the model, as scoring is.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class ConfusionMatrix:
    """A C x C int64 confusion matrix (rows = label, columns = prediction), accumulated over a data set.

    The matrix lives on `device` (or, if None, on the device of the first update), so validation on
    the GPU never copies predictions to the host. Label values outside [0, C) other than
    `ignore_index` are an error, never silently dropped: they mean the data set or the class
    count is wrong, and a quietly "fine" mIoU would hide it.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix: torch.Tensor | None = None
        if device is not None:
            self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    # ------------------------------------------------------------------ accumulation
    def _ensure(self, device: torch.device) -> torch.Tensor:
        if self.matrix is None:
            self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64, device=device)
        return self.matrix

    def reset(self) -> None:
        """Forget everything accumulated so far (keeps the device)."""
        if self.matrix is not None:
            self.matrix.zero_()

    @torch.no_grad()
    def update(self, pred: ArrayLike, label: ArrayLike) -> None:
        """Add one prediction/label pair (any equal shapes, e.g. HxW or NxHxW) to the matrix."""
        pred_t = _as_tensor(pred, "prediction")
        label_t = _as_tensor(label, "label")
        if tuple(pred_t.shape) != tuple(label_t.shape):
            raise RefineError(
                f"prediction shape {tuple(pred_t.shape)} does not match label shape {tuple(label_t.shape)}",
                hint="predictions must be at the label's original resolution",
            )
        matrix = self._ensure(pred_t.device)
        pred_t = pred_t.to(matrix.device).reshape(-1)
        label_t = label_t.to(matrix.device).reshape(-1)
        if pred_t.numel() == 0:
            return
        with single_threaded(matrix.device):
            self._accumulate(matrix, pred_t, label_t)

    def _accumulate(self, matrix: torch.Tensor, pred_t: torch.Tensor, label_t: torch.Tensor) -> None:
        num = self.num_classes
        pred_lo, pred_hi = (int(v) for v in torch.aminmax(pred_t))
        if pred_lo < 0 or pred_hi >= num:
            bad = pred_lo if pred_lo < 0 else pred_hi
            raise RefineError(f"prediction contains class {bad}, outside [0, {num - 1}]")
        label_lo, label_hi = (int(v) for v in torch.aminmax(label_t))
        ignore = self.ignore_index
        if num <= ignore < 4096 and label_lo >= 0 and label_hi <= ignore:
            # Fast path: one bincount over label*C+pred; rows >= C land past C*C, where they are
            # either the ignore row (dropped) or an invalid label value (reported).
            index = _flat_index(label_t, pred_t, num, bins=(ignore + 1) * num)
            counts = torch.bincount(index, minlength=num * num)
            extra = counts[num * num :]
            if extra.numel():
                rows = torch.nonzero(extra).reshape(-1) // num + num
                bad_rows = rows[rows != ignore]
                if bad_rows.numel():
                    self._raise_bad_label(int(bad_rows[0]))
            matrix += counts[: num * num].reshape(num, num)
            return
        valid = label_t != ignore
        bad = valid & ((label_t < 0) | (label_t >= num))
        if bool(bad.any()):
            self._raise_bad_label(int(label_t[bad][0]))
        index = _flat_index(label_t[valid], pred_t[valid], num, bins=num * num)
        matrix += torch.bincount(index, minlength=num * num).reshape(num, num)

    def _raise_bad_label(self, value: int) -> None:
        raise RefineError(
            f"label value {value} is outside [0, {self.num_classes - 1}] and is not the ignore index "
            f"{self.ignore_index}",
            hint="the labels do not match this class count; re-run `refine prepare` or check the checkpoint",
        )

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts (e.g. from a worker process) to this one; returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class and {self.num_classes}-class matrices")
        if other.matrix is not None:
            matrix = self._ensure(other.matrix.device)
            matrix += other.matrix.to(matrix.device)
        return self

    def reduce_distributed(self) -> ConfusionMatrix:
        """Sum the matrix over all ranks when torch.distributed is initialised (no-op otherwise).

        Call it once, after the last update: every rank then holds the global matrix. With NCCL the
        matrix must be on this rank's GPU, which is where `update` put it when predictions were there.
        """
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            matrix = self._ensure(torch.device("cpu"))
            dist.all_reduce(matrix, op=dist.ReduceOp.SUM)
        return self

    # ------------------------------------------------------------------ scores
    def to_numpy(self) -> np.ndarray:
        """The matrix as a (C, C) int64 NumPy array on the host."""
        if self.matrix is None:
            return np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        return self.matrix.detach().cpu().numpy().astype(np.int64, copy=False)

    def compute(self) -> Scores:
        """Derive mIoU, pixel accuracy, mean class accuracy, FWIoU and the per-class table."""
        return scores_from_matrix(self.to_numpy())


def scores_from_matrix(matrix: np.ndarray) -> Scores:
    """Scores of a (C, C) confusion matrix (rows = label, columns = prediction)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    true_pos = np.diag(matrix)
    gt = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    union = gt + predicted - true_pos
    total = float(matrix.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, true_pos / union, np.nan)
        acc = np.where(gt > 0, true_pos / gt, np.nan)
    skipped = [int(index) for index in np.flatnonzero(union == 0)]
    present = ~np.isnan(iou)
    miou = float(iou[present].mean()) if present.any() else math.nan
    has_gt = ~np.isnan(acc)
    mean_acc = float(acc[has_gt].mean()) if has_gt.any() else math.nan
    pixel_acc = float(true_pos.sum() / total) if total > 0 else math.nan
    fwiou = float(((gt[has_gt] / total) * iou[has_gt]).sum()) if total > 0 else math.nan
    return Scores(
        miou=miou,
        pixel_acc=pixel_acc,
        mean_acc=mean_acc,
        fwiou=fwiou,
        iou=iou,
        acc=acc,
        skipped=skipped,
        num_pixels=int(total),
    )
