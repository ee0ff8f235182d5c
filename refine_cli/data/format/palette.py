"""Colour maps for label images and prediction overlays.

Predicted labels are saved as palette ('P' mode) PNGs: viewers show colours while every reader
(PIL, `refine eval --pred`, the VOC devkit) gets the class indices back unchanged.
"""

from __future__ import annotations

import numpy as np

from refine_cli.class_tables import voc_palette
from refine_cli.data.format.imageio import IGNORE_COLOR


def palette_array(palette: list[list[int]] | None, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(256, 3) uint8 lookup table: the given colours (VOC colours where missing), IGNORE_COLOR for ignore."""
    table = np.array(voc_palette(256), dtype=np.uint8)
    for index, colour in enumerate((palette or [])[:256]):
        table[index] = [int(v) for v in colour]
    if num_classes <= ignore_index <= 255:
        table[ignore_index] = IGNORE_COLOR
    return table


def colorize(label: np.ndarray, table: np.ndarray) -> np.ndarray:
    """HxW class indices -> HxWx3 uint8 RGB."""
    return table[label]


def overlay(image: np.ndarray, label: np.ndarray, table: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the colour-coded label over the RGB image; class 0 (background) is blended too, lighter."""
    colours = colorize(label, table).astype(np.float32)
    weight = np.where(label[..., None] == 0, alpha * 0.4, alpha).astype(np.float32)
    blended = image.astype(np.float32) * (1 - weight) + colours * weight
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
