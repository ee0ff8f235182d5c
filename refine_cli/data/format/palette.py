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


def overlay(
    image: np.ndarray, label: np.ndarray, table: np.ndarray, alpha: float = 0.5, outlines: bool = True
) -> np.ndarray:
    """Blend the colour-coded label over the RGB image; class 0 (background) is blended too, lighter.

    `outlines`: the border of every region is drawn in its class colour at full strength, so regions stay
    distinct where the blend is faint (a low `alpha`, a dark class colour on a dark image).
    """
    colours = colorize(label, table)
    weight = np.where(label[..., None] == 0, alpha * 0.4, alpha).astype(np.float32)
    blended = np.clip(image.astype(np.float32) * (1 - weight) + colours * weight + 0.5, 0, 255).astype(np.uint8)
    if outlines:
        edges = class_outlines(label, thickness=max(1, round(min(label.shape) / 300)))
        blended[edges] = colours[edges]
    return blended


def class_outlines(label: np.ndarray, thickness: int = 1) -> np.ndarray:
    """HxW bool: the pixels on the border of a region (a 4-neighbour has another class), `thickness` wide."""
    edges = np.zeros(label.shape, dtype=bool)
    across, down = label[:, 1:] != label[:, :-1], label[1:] != label[:-1]
    edges[:, 1:] |= across
    edges[:, :-1] |= across
    edges[1:] |= down
    edges[:-1] |= down
    if thickness > 1:
        import cv2

        grown = cv2.dilate(edges.astype(np.uint8), np.ones((thickness, thickness), np.uint8))
        edges = grown.astype(bool)
    return edges


def legend_strip(classes: list[str], table: np.ndarray, shown: list[int], width: int) -> np.ndarray:
    """An RGB strip `width` pixels wide: a colour swatch and `index name` for each class in `shown`, wrapped."""
    from PIL import Image, ImageDraw, ImageFont

    size = int(min(28, max(12, width // 48)))
    font = ImageFont.load_default(size=size)
    gap, line = size // 2, int(size * 1.6)
    entries = [(index, f"{index} {classes[index]}") for index in shown]
    places, x, y = [], gap, gap
    for index, text in entries:
        extent = size + gap // 2 + int(font.getlength(text)) + 2 * gap
        if x > gap and x + extent > width:  # the next row
            x, y = gap, y + line
        places.append((x, y, index, text))
        x += extent
    strip = Image.new("RGB", (width, y + line + gap // 2), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for x, y, index, text in places:
        draw.rectangle((x, y, x + size, y + size), fill=tuple(int(v) for v in table[index]), outline=(90, 90, 90))
        draw.text((x + size + gap // 2, y + size // 2), text, fill=(20, 20, 20), font=font, anchor="lm")
    return np.asarray(strip)


def prediction_overlay(
    image: np.ndarray,
    label: np.ndarray,
    table: np.ndarray,
    classes: list[str],
    alpha: float = 0.5,
    legend: bool = False,
) -> np.ndarray:
    """`refine predict --overlay`: the outlined blend, with a legend of the classes present below it if asked."""
    blended = overlay(image, label, table, alpha=alpha)
    if not legend:
        return blended
    present = [int(value) for value in np.unique(label) if value < len(classes)]
    return np.concatenate([blended, legend_strip(classes, table, present, blended.shape[1])], axis=0)
