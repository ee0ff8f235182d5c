"""The charts of the evaluation report: per-class IoU/accuracy, the confusion heatmap, gallery rows.

Sized by the class count, so the same code stays readable for VOC's 21 classes and ADE20K's 150:
one bar (and one heatmap row) per class, fonts shrinking gently, the figure growing instead.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from refine_cli.data.format.palette import colorize
from refine_cli.figures import class_font_size, fit_height, new_figure, save_figure

GALLERY_HEIGHT = 240  # pixels per gallery panel: enough to judge a mask, small enough for 12 rows on a page
# Colours a wrong pixel may get, best first; the report takes the first one far from every class colour
_ERROR_CANDIDATES = ((255, 0, 255), (255, 0, 0), (0, 255, 255), (255, 255, 0), (255, 128, 0), (0, 255, 0),
                     (0, 0, 255), (255, 255, 255), (0, 0, 0))  # fmt: skip
_CLEARLY_APART = 100.0  # RGB distance at which two flat colours are not mistaken for each other


def per_class_chart(names: list[str], iou: np.ndarray, acc: np.ndarray, path: Path) -> Path:
    """Horizontal bars of IoU (sorted, best on top) with accuracy as a marker; absent classes at the bottom."""
    present = [i for i in range(len(names)) if not math.isnan(iou[i])]
    absent = [i for i in range(len(names)) if math.isnan(iou[i])]
    order = sorted(present, key=lambda i: iou[i]) + absent[::-1]  # barh draws bottom-up: best ends on top
    count = len(order)
    font = class_font_size(count)
    figure = new_figure(8.0, max(3.0, 0.16 * count + 1.4))
    axes = figure.add_subplot()
    rows = np.arange(count)
    values = np.array([0.0 if math.isnan(iou[i]) else 100 * iou[i] for i in order])
    bars = axes.barh(rows, values, color="#4878a8", label="IoU %")
    axes.bar_label(bars, labels=["" if i in absent else f"{v:.1f}" for i, v in zip(order, values, strict=True)],
                   fontsize=max(font - 1, 4), padding=2)  # fmt: skip
    accuracy = np.array([np.nan if math.isnan(acc[i]) else 100 * acc[i] for i in order])
    axes.scatter(accuracy, rows, marker="|", s=60, color="#d0502a", label="accuracy %", zorder=3)
    labels = [f"{names[i]} (absent)" if i in absent else names[i] for i in order]
    axes.set_yticks(rows, labels, fontsize=font)
    for tick, index in zip(axes.get_yticklabels(), order, strict=True):
        if index in absent:
            tick.set_color("#999999")
    axes.set_xlim(0, 100)
    axes.set_ylim(-0.6, count - 0.4)
    axes.set_xlabel("%")
    axes.grid(axis="x", alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    axes.set_title("per-class IoU (bars) and accuracy (ticks); grey: absent from labels and predictions", fontsize=9)
    return save_figure(figure, path)


def normalised_confusion(matrix: np.ndarray) -> np.ndarray:
    """Rows divided by their ground-truth pixel count (rows without pixels stay 0)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def confusion_heatmap(matrix: np.ndarray, names: list[str], path: Path) -> Path:
    """The row-normalised confusion matrix (ground truth rows, prediction columns) with names on both axes.

    Each class gets a fixed height (so 150 names stay legible), and the margins are computed from the
    longest name instead of by a layout engine, which would render the 300 tick labels twice.
    """
    count = len(names)
    normalised = normalised_confusion(matrix)
    font = class_font_size(count)
    cell = max(0.13, font / 55)  # inches per class: a row is a little taller than its name
    margin = 0.6 + max((len(name) for name in names), default=1) * font * 0.6 / 72  # inches for the tick labels
    side = max(3.0, cell * count)
    width, height = margin + side + 1.6, margin + side + 0.6
    figure = new_figure(width, height, layout=None)
    axes = figure.add_axes((margin / width, margin / height, side / width, side / height))
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    ticks = np.arange(count)
    axes.set_xticks(ticks, names, rotation=90, fontsize=font)
    axes.set_yticks(ticks, names, fontsize=font)
    axes.set_xlabel("prediction")
    axes.set_ylabel("ground truth")
    if count <= 12:  # few classes: the numbers fit in the cells
        for row in range(count):
            for col in range(count):
                value = normalised[row, col]
                if value >= 0.005:
                    colour = "white" if value > 0.5 else "black"
                    axes.text(col, row, f"{100 * value:.0f}", ha="center", va="center", fontsize=7, color=colour)
    bar_axes = figure.add_axes(((margin + side + 0.25) / width, margin / height, 0.2 / width, side / height))
    figure.colorbar(image, cax=bar_axes, label="fraction of the ground-truth class's pixels")
    axes.set_title("confusion matrix, normalised per ground-truth class", fontsize=10)
    return save_figure(figure, path)


def top_confusions(matrix: np.ndarray, names: list[str], limit: int = 20) -> list[dict[str, object]]:
    """The largest off-diagonal entries: which class is taken for which, as a share of its pixels."""
    matrix = np.asarray(matrix, dtype=np.int64)
    normalised = normalised_confusion(matrix)
    off = normalised.copy()
    np.fill_diagonal(off, 0.0)
    flat = np.argsort(off, axis=None)[::-1][:limit]
    rows = []
    for index in flat:
        truth, predicted = divmod(int(index), len(names))
        if off[truth, predicted] <= 0:
            break
        rows.append(
            {
                "truth": names[truth],
                "predicted": names[predicted],
                "fraction": float(off[truth, predicted]),
                "pixels": int(matrix[truth, predicted]),
            }
        )
    return rows


def error_colour(table: np.ndarray, num_classes: int, ignore_index: int) -> tuple[int, int, int]:
    """The colour of wrong pixels: one that no class (nor ignore, nor the grey of right pixels) is drawn in.

    The first candidate clearly apart from all of them, else the one farthest from the closest.
    """
    greys = [(value, value, value) for value in range(40, 160, 20)]  # right pixels: the image dimmed to grey
    used = np.array([*table[:num_classes].tolist(), table[ignore_index].tolist(), *greys], dtype=np.float32)
    candidates = np.array(_ERROR_CANDIDATES, dtype=np.float32)
    nearest = np.linalg.norm(candidates[:, None, :] - used[None, :, :], axis=2).min(axis=1)
    apart = np.flatnonzero(nearest >= _CLEARLY_APART)
    best = int(apart[0]) if apart.size else int(nearest.argmax())
    return _ERROR_CANDIDATES[best]


def error_map(
    image: np.ndarray,
    label: np.ndarray,
    pred: np.ndarray,
    ignore_index: int,
    ignore_colour,
    wrong_colour,  # noqa: ANN001
) -> np.ndarray:
    """The image greyed and dimmed where the prediction is right, `wrong_colour` where wrong, ignore where unscored."""
    grey = image.astype(np.float32).mean(axis=2, keepdims=True) * 0.45 + 40
    result = np.repeat(grey, 3, axis=2).astype(np.uint8)
    wrong = (pred != label) & (label != ignore_index)
    result[wrong] = wrong_colour
    result[label == ignore_index] = ignore_colour
    return result


def gallery_row(
    image: np.ndarray, label: np.ndarray, pred: np.ndarray, table: np.ndarray, ignore_index: int,
    wrong_colour: tuple[int, int, int],
) -> np.ndarray:  # fmt: skip
    """image | ground truth | prediction | error map, side by side at label size (scaled to GALLERY_HEIGHT)."""
    errors = error_map(image, label, pred, ignore_index, table[ignore_index], wrong_colour)
    panels = [
        fit_height(image, GALLERY_HEIGHT, nearest=False),
        fit_height(colorize(label, table), GALLERY_HEIGHT, nearest=True),
        fit_height(colorize(pred, table), GALLERY_HEIGHT, nearest=True),
        fit_height(errors, GALLERY_HEIGHT, nearest=True),
    ]
    gap = np.full((panels[0].shape[0], 6, 3), 255, dtype=np.uint8)
    return np.concatenate([part for panel in panels for part in (panel, gap)][:-1], axis=1)
