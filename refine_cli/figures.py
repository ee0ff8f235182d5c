"""Shared plumbing for the pictures refine writes (eval report, training curves, bench plot, gallery).

Figures are built with matplotlib's object API on the Agg canvas (`matplotlib.figure.Figure`, never
pyplot): no display is ever needed, no global figure state leaks between commands or threads, and
every file is written atomically like every other refine output. matplotlib is imported only when a
picture is drawn, so no command pays for it unless it asked for a picture.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from refine_cli.errors import RefineError
from refine_cli.fileio import write_bytes_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_FORMATS = ("png", "svg", "pdf")


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """A figure of `width` x `height` inches on the Agg canvas (no pyplot, no display).

    `layout=None` for very large figures, which place their axes themselves: the constrained
    layout draws the figure twice, which costs seconds with hundreds of tick labels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def class_font_size(num_classes: int) -> float:
    """Tick-label size for one label per class: 9 pt for a few classes, down to 6 pt (still legible) for 150."""
    return float(min(9.0, max(6.0, 300.0 / max(num_classes, 1))))


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Render `figure` into `path` atomically; the format follows the suffix (png, svg or pdf)."""
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in FIGURE_FORMATS:
        raise RefineError(f"cannot write a figure to {path}", hint="give a file name ending in .png, .svg or .pdf")
    buffer = io.BytesIO()
    with _text_as_typed(figure):
        figure.savefig(buffer, format=kind, dpi=dpi)
    try:
        write_bytes_atomic(path, buffer.getvalue())
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise RefineError(f"cannot write {path} ({reason})", hint="choose a writable place for the picture") from None
    return path


@contextlib.contextmanager
def _text_as_typed(figure: Figure) -> Iterator[None]:
    """Draw every text as typed: a class name like `$x^$` is a name, not mathtext (which fails to parse).

    Texts made so far are switched one by one; tick labels made while drawing get the setting from
    an rc_context around the draw, so no global matplotlib state changes.
    """
    import matplotlib
    from matplotlib.text import Text

    for text in figure.findobj(Text):
        text.set_parse_math(False)
    with matplotlib.rc_context({"text.parse_math": False}):
        yield


def fit_height(array: np.ndarray, height: int, nearest: bool) -> np.ndarray:
    """Scale `array` to `height` rows (aspect kept): labels with `nearest`; images with area, or blocky when enlarged.

    Small images are enlarged so a 64-pixel sample is as easy to judge as a 2000-pixel one.
    """
    import cv2

    if array.shape[0] == height:
        return array
    width = max(1, round(array.shape[1] * height / array.shape[0]))
    blocky = nearest or array.shape[0] < height
    return cv2.resize(array, (width, height), interpolation=cv2.INTER_NEAREST if blocky else cv2.INTER_AREA)
