"""The one image reader and label writer of refine: every image and label goes through here.

Why one module: a 2 KB file can claim 30000x30000 pixels, and decoding it takes ~2.7 GB per channel.
Every reader checks the header's pixel count against one limit BEFORE any pixel is decoded, so no
command (prepare, check, train, eval, predict, custom imports) can be taken down by a lying file.
Decoding is done by Pillow on the stored pixel grid (EXIF orientation ignored: labels are drawn on the
stored grid) and every byte is decoded, so a truncated JPEG fails here instead of being padded with grey.

The limit is `REFINE_MAX_PIXELS` (environment, so worker processes inherit it; `refine --max-pixels N`
sets it), default 100 Mpixel: generous for real photos and aerial tiles, far below a bomb.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.envvars import env_number
from refine_cli.errors import RefineError

DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "REFINE_MAX_PIXELS"
# The picture files refine takes for images (prepare custom, predict): what Pillow decodes here.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
IGNORE_COLOR = (224, 224, 192)  # VOC's colour for 255, used when a palette has no entry for it
LABEL_PNG_LEVEL = 1  # zlib level for label PNGs: much faster than the default, files slightly larger
_WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I")  # Pillow's modes for 16- and 32-bit single-channel images
_PIL_ERRORS: tuple[type[BaseException], ...] = (OSError, SyntaxError, ValueError, EOFError)


class ImageReadError(RefineError):
    """An image or label file that cannot be used: missing, not an image, truncated or corrupt."""


class PixelLimitError(ImageReadError):
    """An image whose header claims more pixels than the limit: refused before decoding."""


@dataclass(frozen=True)
class ImageHeader:
    """What the file's header says, read without decoding any pixel."""

    height: int
    width: int
    format: str
    mode: str

    @property
    def pixels(self) -> int:
        return self.height * self.width


def max_pixels() -> int:
    """The pixel limit in force: REFINE_MAX_PIXELS if set (0 means no limit), else the default."""
    hint = "give a pixel count such as 100000000, or 0 for no limit"
    return int(env_number(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS, hint=hint))


def set_max_pixels(value: int) -> None:
    """Set the limit for this process and every worker it starts (through the environment)."""
    if value < 0:
        raise RefineError(f"--max-pixels {value} is negative", hint="give a pixel count, or 0 for no limit")
    os.environ[MAX_PIXELS_ENV] = str(int(value))


def _pil():
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # refine checks the pixel count itself, with its own limit and message
    return Image


def _describe(source: str | os.PathLike[str] | bytes, name: str | None) -> str:
    if name:
        return name
    return "image bytes" if isinstance(source, bytes | bytearray | memoryview) else str(source)


def _open(source: str | os.PathLike[str] | bytes, what: str, name: str | None):
    """An open PIL image (header read, nothing decoded), or ImageReadError that says what is wrong."""
    image_module = _pil()
    where = _describe(source, name)
    if isinstance(source, bytes | bytearray | memoryview):
        stream: io.BytesIO | str = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        if not path.exists():
            raise ImageReadError(f"missing {what} file {where}")
        if not path.is_file():
            raise ImageReadError(f"{what} {where} is not a file")
        stream = str(path)
    try:
        return image_module.open(stream)
    except _PIL_ERRORS as error:
        reason = "not an image file" if "cannot identify" in str(error) else _one_line(error)
        raise ImageReadError(
            f"cannot read {what} {where}: {reason}", hint="the file is corrupt or not an image"
        ) from None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _check_limit(image, what: str, where: str) -> ImageHeader:
    width, height = image.size
    header = ImageHeader(int(height), int(width), str(image.format or "?"), str(image.mode))
    limit = max_pixels()
    if width <= 0 or height <= 0:
        raise ImageReadError(f"cannot read {what} {where}: its header claims an empty {width}x{height} image")
    if limit and header.pixels > limit:
        raise PixelLimitError(
            f"{what} {where} claims {width}x{height} = {header.pixels / 1e6:.1f} Mpixel, over the "
            f"{limit / 1e6:g} Mpixel limit",
            hint=f"if the file is genuine, raise the limit with `refine --max-pixels N` or {MAX_PIXELS_ENV}=N",
        )
    return header


@contextlib.contextmanager
def _checked(
    source: str | os.PathLike[str] | bytes, what: str, name: str | None
) -> Iterator[tuple[Any, ImageHeader, str]]:
    """(open image, its header, how to name it): the pixel limit is enforced before any caller decodes."""
    where = _describe(source, name)
    with _open(source, what, name) as image:
        yield image, _check_limit(image, what, where), where


def read_header(source: str | os.PathLike[str] | bytes, what: str = "image", name: str | None = None) -> ImageHeader:
    """Size, format and mode from the header only, with the pixel limit enforced."""
    with _checked(source, what, name) as (_, header, _where):
        return header


def image_size(source: str | os.PathLike[str] | bytes, what: str = "image") -> tuple[int, int]:
    """(height, width) from the header only, with the pixel limit enforced."""
    header = read_header(source, what)
    return header.height, header.width


def exif_orientation(source: str | os.PathLike[str] | bytes, what: str = "image") -> int:
    """The EXIF orientation tag (1-8; 1 when absent), read from the header: refine never applies it.

    Only used to explain a size mismatch: a phone photo stored landscape with orientation 6 or 8 is
    displayed portrait, so a mask drawn on the displayed picture has the transposed size.
    """
    with _open(source, what, None) as image:
        try:
            value = image.getexif().get(0x0112, 1)
        except _PIL_ERRORS:
            return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _load(image, what: str, where: str) -> None:
    try:
        image.load()
    except _PIL_ERRORS as error:
        reason = _one_line(error)
        if "truncated" in reason or "broken data stream" in reason:
            reason = f"the file is truncated ({reason})"
        raise ImageReadError(f"cannot read {what} {where}: {reason}", hint="the file is corrupt; replace it") from None


def verify_decodes(source: str | os.PathLike[str] | bytes, what: str = "image", name: str | None = None) -> ImageHeader:
    """Decode every byte (truncation is caught) without keeping the pixels; return the header.

    JPEGs are decoded in draft mode (DCT scaling to 1/8): libjpeg still entropy-decodes the whole stream,
    so truncation fails exactly as in a full decode, at about half the cost.
    """
    with _checked(source, what, name) as (image, header, where):
        if image.format == "JPEG":
            image.draft(image.mode, (max(1, header.width // 8), max(1, header.height // 8)))
        _load(image, what, where)
    if header.format == "PNG":  # the decoder stops at the last pixel: a file cut after it decodes "fine"
        _verify_chunks(source, what, name, where)
    return header


def _verify_chunks(source: str | os.PathLike[str] | bytes, what: str, name: str | None, where: str) -> None:
    """Every chunk of a PNG up to IEND is there with its checksum (PIL's verify), or ImageReadError."""
    with _open(source, what, name) as image:
        try:
            image.verify()
        except _PIL_ERRORS as error:
            raise ImageReadError(
                f"cannot read {what} {where}: the file is truncated or damaged ({_one_line(error)})",
                hint="the file is corrupt; replace it",
            ) from None


def read_rgb(source: str | os.PathLike[str] | bytes, what: str = "image", name: str | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB of the stored pixel grid (grey, palette, CMYK, 16-bit and alpha images converted)."""
    with _checked(source, what, name) as (image, _, where):
        _load(image, what, where)
        if image.mode == "RGB":
            return np.asarray(image, dtype=np.uint8).copy()
        if image.mode in _WIDE_GREY_MODES:  # 16-bit grey: scale to 8 bits, not clip
            grey = np.asarray(image, dtype=np.float64)
            peak = grey.max() if grey.size else 0
            grey = (grey * (255.0 / peak) if peak > 255 else grey).clip(0, 255).astype(np.uint8)
            return np.repeat(grey[..., None], 3, axis=2)
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def read_label(path: str | os.PathLike[str], what: str = "label") -> np.ndarray:
    """HxW uint8 class indices of a palette ('P') or grey ('L') PNG: the indices, never the palette colours."""
    with _checked(path, what, None) as (image, _, where):
        if image.mode not in ("P", "L"):
            raise ImageReadError(
                f"{what} {where} has mode {image.mode}; labels must be single-channel class indices ('P' or 'L')",
                hint="was it re-saved as RGB? convert the dataset again with `refine prepare`",
            )
        _load(image, what, where)
        return np.asarray(image, dtype=np.uint8).copy()


def read_mask(path: str | os.PathLike[str], what: str = "label") -> np.ndarray:
    """A source annotation as stored: HxW indices for 'P'/'L'/16-bit masks, HxWx3 uint8 RGB for colour ones.

    For importers of foreign label files (Person-Part, own data), which map colours or wide indices
    themselves; refine's own labels are read with `read_label`.
    """
    with _checked(path, what, None) as (image, _, where):
        _load(image, what, where)
        if image.mode in ("P", "L", "1"):
            return np.asarray(image.convert("L") if image.mode == "1" else image, dtype=np.uint8).copy()
        if image.mode in _WIDE_GREY_MODES:
            return np.asarray(image, dtype=np.int64).copy()
        if image.mode in ("RGB", "RGBA", "LA", "PA"):
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
        raise ImageReadError(f"{what} {where} has mode {image.mode}; expected class indices or RGB colours")


def _flat_palette(palette, ignore_index: int = 255) -> list[int]:
    """A 768-value PIL palette: the given colours, black for the rest, IGNORE_COLOR for ignore."""
    colours = [tuple(int(v) for v in colour) for colour in list(palette)[:256]]
    flat = [0] * 768
    for index, colour in enumerate(colours):
        flat[index * 3 : index * 3 + 3] = colour
    if len(colours) <= ignore_index <= 255:
        flat[ignore_index * 3 : ignore_index * 3 + 3] = list(IGNORE_COLOR)
    return flat


def encode_label_png(label: np.ndarray, palette=None, what: str = "label") -> bytes:
    """PNG bytes of a uint8 HxW class map: mode 'P' (indices) with the palette attached for viewing.

    `palette` is a list of (r, g, b) or a (N, 3) array; every reader gets the indices back unchanged.
    Without a palette the PNG is plain 8-bit grey (what benchmark servers such as Cityscapes' expect).
    """
    image_module = _pil()
    if not isinstance(label, np.ndarray) or label.ndim != 2 or label.dtype != np.uint8:
        kind = f"{label.dtype} {label.shape}" if isinstance(label, np.ndarray) else type(label).__name__
        raise ValueError(f"label for {what} must be a 2-D uint8 array, got {kind}")
    label = np.ascontiguousarray(label)
    image = image_module.frombuffer("L", (label.shape[1], label.shape[0]), label, "raw", "L", 0, 1)
    if palette is not None:
        image.putpalette(_flat_palette(palette))  # turns the 'L' image into 'P' without touching the indices
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=LABEL_PNG_LEVEL)
    return buffer.getvalue()


def encode_image_png(rgb: np.ndarray) -> bytes:
    """Lossless PNG bytes of an HxWx3 uint8 RGB image (for sources the unified format does not store as is)."""
    image_module = _pil()
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError("encode_image_png needs an HxWx3 uint8 array")
    buffer = io.BytesIO()
    image_module.fromarray(np.ascontiguousarray(rgb), "RGB").save(buffer, format="PNG", compress_level=LABEL_PNG_LEVEL)
    return buffer.getvalue()
