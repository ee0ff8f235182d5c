"""`refine check --gallery DIR`: the class-frequency chart and random samples with their labels overlaid.

The fastest way to see a wrong class mapping after `prepare`: a "person" painted over a dog, a
class that never occurs, or a palette that does not match the names shows at a glance here, while
every count in the check table still looks plausible.

    DIR/class_frequency.png   share of labelled pixels per class (log scale) and images containing it
    DIR/samples.png           N random samples (fixed seed) with the label overlaid, and a colour legend
"""

from __future__ import annotations

import math
import random
import textwrap
from pathlib import Path

import numpy as np

from refine_cli.data.format.check import CheckReport
from refine_cli.data.format.palette import overlay, palette_array
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.errors import RefineError
from refine_cli.figures import class_font_size, fit_height, new_figure, save_figure

PANEL_HEIGHT = 256
GALLERY_FILES = ("class_frequency.png", "samples.png")  # what write_gallery writes into its folder


def class_frequency_chart(report: CheckReport, table: np.ndarray, path: Path) -> Path:
    """One bar per class in the class's own colour; classes with no pixel are named in red."""
    count = len(report.classes)
    total = max(sum(report.class_pixels), 1)
    fractions = [100 * pixels / total for pixels in report.class_pixels]
    font = class_font_size(count)
    figure = new_figure(8.0, max(3.0, 0.16 * count + 1.4))
    axes = figure.add_subplot()
    rows = np.arange(count)[::-1]  # class 0 on top, as in the check table
    colours = [tuple(int(v) / 255 for v in table[index]) for index in range(count)]
    axes.barh(rows, [max(value, 1e-6) for value in fractions], color=colours, edgecolor="#555555", linewidth=0.5)
    labels = [f"{index} {name}" for index, name in enumerate(report.classes)]
    axes.set_yticks(rows, labels, fontsize=font)
    for tick, pixels in zip(axes.get_yticklabels(), report.class_pixels, strict=True):
        if pixels == 0:
            tick.set_color("#d01010")
    axes.set_xscale("log")
    low = max(min([v for v in fractions if v > 0], default=1e-3) / 3, 1e-4)
    axes.set_xlim(low, max(max(fractions), low) * 8)  # room right of the longest bar for its text
    for row, value, images in zip(rows, fractions, report.class_images, strict=True):
        if value > 0:
            axes.annotate(f"{value:.2g}% / {images:,} img", (value, row), textcoords="offset points", xytext=(3, -2),
                          fontsize=max(font - 1, 4), va="center")  # fmt: skip
    axes.set_ylim(-0.6, count - 0.4)
    axes.set_xlabel("% of labelled pixels (log scale); text: share / images containing the class")
    axes.grid(axis="x", alpha=0.3)
    axes.set_title(f"{report.name}: class frequency over {report.samples:,} samples (red: never labelled)", fontsize=9)
    return save_figure(figure, path)


def sample_grid(dataset: UnifiedDataset, sample_ids: list[str], table: np.ndarray, path: Path) -> tuple[Path, int]:
    """The label of each sample blended over its image, with the classes it contains; returns (path, drawn)."""
    from matplotlib.patches import Patch

    meta = dataset.meta
    panels: list[tuple[str, np.ndarray, list[int]]] = []
    for sample_id in sample_ids:
        try:
            image, label = dataset.read_image(sample_id), dataset.read_label(sample_id)
        except RefineError:
            continue  # `refine check` lists the unreadable files; the gallery shows what can be shown
        if image.shape[:2] != label.shape:
            continue
        present = [int(v) for v in np.unique(label) if v < meta.num_classes]
        panels.append((sample_id, fit_height(overlay(image, label, table, alpha=0.6), PANEL_HEIGHT, False), present))
    if not panels:
        raise RefineError(f"no sample of {dataset.path} could be drawn", hint="run `refine check` without --gallery")
    columns = min(4, len(panels))
    grid_rows = math.ceil(len(panels) / columns)
    figure = new_figure(3.2 * columns, 2.9 * grid_rows + 0.9)
    for index, (sample_id, picture, present) in enumerate(panels):
        axes = figure.add_subplot(grid_rows, columns, index + 1)
        axes.imshow(picture, interpolation="nearest")
        axes.set_axis_off()
        # wrapped here, not by matplotlib: its wrap measures `$...$` as mathtext even with parse_math off
        names = textwrap.fill(", ".join(meta.classes[v] for v in present), width=48)
        axes.set_title(f"{sample_id}\n{names}", fontsize=7)
    shown = sorted({v for _, _, present in panels for v in present})
    handles = [Patch(color=tuple(int(c) / 255 for c in table[v]), label=f"{v} {meta.classes[v]}") for v in shown]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(6, max(1, len(handles))), fontsize=7)
    figure.suptitle(f"{meta.name}: {len(panels)} random samples, labels overlaid", fontsize=10)
    return save_figure(figure, path), len(panels)


def write_gallery(report: CheckReport, out_dir: Path, samples: int = 16, seed: int = 0) -> list[Path]:
    """Both pictures for the dataset `report` describes; the samples are a seeded random choice."""
    dataset = UnifiedDataset(report.path)
    meta = dataset.meta
    table = palette_array(meta.palette, meta.num_classes, meta.ignore_index)
    ids = sorted(set(dataset.label_ids()) & set(dataset.image_files()))
    chosen = sorted(random.Random(seed).sample(ids, min(samples, len(ids))))
    written = [class_frequency_chart(report, table, Path(out_dir) / GALLERY_FILES[0])]
    if chosen:
        written.append(sample_grid(dataset, chosen, table, Path(out_dir) / GALLERY_FILES[1])[0])
    return written
