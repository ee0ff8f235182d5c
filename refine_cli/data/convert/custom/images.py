"""The image of an own-data sample as the annotation tool showed it, ready for the unified format.

jpg/jpeg/png files are copied byte for byte; bmp/tif/webp (and images embedded in a JSON in such a
format) are stored as lossless PNG. EXIF orientation: refine keeps the stored pixel grid (a mask is
drawn on that grid in CVAT, VOC and mask folders), but labelme, Label Studio and Ultralytics read the
image with its orientation applied (labelme's `read_image_file`, the browser, OpenCV's imread), so their
coordinates are in the rotated picture. For those sources (`oriented=True`) an image whose EXIF tag
rotates or mirrors it is stored rotated, as PNG, and its labels line up with what the annotator saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.convert.base import SampleError
from refine_cli.data.format import imageio

STORED_AS_IS = (".jpg", ".jpeg", ".png")
_STORED_FORMATS = {"JPEG": "jpg", "PNG": "png"}


def apply_orientation(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels as displayed under EXIF orientation 1-8 (what PIL.ImageOps.exif_transpose does)."""
    if orientation == 2:
        return rgb[:, ::-1]
    if orientation == 3:
        return rgb[::-1, ::-1]
    if orientation == 4:
        return rgb[::-1]
    if orientation == 5:
        return rgb.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(rgb, -1)
    if orientation == 7:
        return rgb[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(rgb, 1)
    return rgb


def _decoded(source: Path | bytes, name: str | None = None) -> np.ndarray:
    try:
        return imageio.read_rgb(source, name=name)
    except imageio.ImageReadError as error:
        raise SampleError(error.one_line()) from None


def image_file(path: Path, oriented: bool = False) -> tuple[tuple[int, int], dict[str, Any]]:
    """((height, width) as the tool showed it, the ConvertedSample image fields) of an image file."""
    try:
        height, width = imageio.image_size(path)
        orientation = imageio.exif_orientation(path) if oriented else 1
    except imageio.ImageReadError as error:
        raise SampleError(error.one_line()) from None
    if orientation != 1:
        rgb = np.ascontiguousarray(apply_orientation(_decoded(path), orientation))
        return (rgb.shape[0], rgb.shape[1]), {"image_bytes": imageio.encode_image_png(rgb), "image_ext": "png"}
    if path.suffix.lower() in STORED_AS_IS:
        return (height, width), {"image_src": path}
    return (height, width), {"image_bytes": imageio.encode_image_png(_decoded(path)), "image_ext": "png"}


def image_bytes(data: bytes, name: str) -> tuple[tuple[int, int], dict[str, Any]]:
    """Same for an image embedded in an annotation file (labelme's imageData), used as stored."""
    try:
        header = imageio.read_header(data, name=name)
    except imageio.ImageReadError as error:
        raise SampleError(error.one_line()) from None
    ext = _STORED_FORMATS.get(header.format)
    if ext is not None:
        return (header.height, header.width), {"image_bytes": data, "image_ext": ext}
    rgb = _decoded(data, name)
    return (header.height, header.width), {"image_bytes": imageio.encode_image_png(rgb), "image_ext": "png"}
