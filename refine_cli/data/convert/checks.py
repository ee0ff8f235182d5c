"""Per-sample input checks shared by the converters.

They run in worker processes and turn every kind of bad input into a SampleError that names the
file, so `--skip-bad` can drop the sample and the report can say which file to look at.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from refine_cli.data.convert.base import SampleError
from refine_cli.data.format import imageio
from refine_cli.data.format.unified import bad_label_values, validate_sample_id
from refine_cli.errors import RefineError


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header only (pixel limit enforced), as a SampleError when unusable.

    Only the header is read here: the pipeline's worker decodes every byte of every image afterwards (that is
    what catches truncated files), so decoding here as well would double the cost of a conversion.
    """
    try:
        return imageio.image_size(path)
    except imageio.ImageReadError as error:
        raise SampleError(error.one_line()) from None


def checked_image_size(path: Path) -> tuple[int, int]:
    """(height, width) after decoding all of the image, for callers that need truncation caught here."""
    try:
        header = imageio.verify_decodes(path)
    except imageio.ImageReadError as error:
        raise SampleError(error.one_line()) from None
    return header.height, header.width


def read_index_png(path: Path) -> np.ndarray:
    """Class indices of a palette ('P') or grey ('L') PNG: the INDICES, never the palette colours."""
    try:
        return imageio.read_label(path)
    except imageio.ImageReadError as error:
        raise SampleError(error.one_line()) from None


def size_mismatch(
    label_hw: tuple[int, ...], image: str | Path, image_hw: tuple[int, int], label_what: str
) -> str | None:
    """Why a label does not cover its image pixel for pixel ('label X is 63x48 but image Y is 64x48'), or None.

    `label_what` names the label for the user: "label PATH", "mask PATH", "its COCO record". When the two
    sizes are only swapped and the image file carries an EXIF rotation, that is said to be the cause: a phone
    photo stored landscape is displayed portrait, so a mask drawn on the displayed picture is transposed.
    """
    if tuple(label_hw) == tuple(image_hw):
        return None
    got = "x".join(str(v) for v in label_hw[::-1])
    text = f"{label_what} is {got} but image {image} is {image_hw[1]}x{image_hw[0]}"
    swapped = tuple(label_hw) == tuple(image_hw[::-1]) and Path(image).is_file()
    orientation = imageio.exif_orientation(Path(image)) if swapped else 1
    if orientation >= 5:
        text += (
            f" as stored; its EXIF orientation {orientation} only displays it as {image_hw[0]}x{image_hw[1]}. "
            "refine reads the stored pixel grid and never rotates (nor does train/eval/predict): save the image "
            "with the rotation applied (e.g. PIL ImageOps.exif_transpose) and use that image instead"
        )
    return text


def check_same_size(label_hw: tuple[int, ...], image: Path, image_hw: tuple[int, int], label_what: str) -> None:
    """A label that does not cover its image pixel for pixel is a broken sample (never resized): SampleError."""
    problem = size_mismatch(label_hw, image, image_hw, label_what)
    if problem is not None:
        raise SampleError(problem)


def check_label(label: np.ndarray, size: tuple[int, int], num_classes: int, label_path: Path, image_path: Path) -> None:
    """Fail when the label does not cover the image pixel for pixel or holds values outside [0, C) and 255."""
    check_same_size(label.shape, image_path, size, f"label {label_path}")
    bad = bad_label_values(label, num_classes, 255)
    if bad:
        shown = ", ".join(str(v) for v in bad[:5])
        raise SampleError(f"label {label_path} has values {shown} outside 0..{num_classes - 1} and 255")


def read_id_list(path: Path, to_id: Callable[[str], str] = str) -> list[str]:
    """Sample ids of a split file, in file order, once each; RefineError when missing or malformed.

    The id is `to_id` of a line's first token: VOC-style lists carry one id per line; DeepLab's
    Person-Part lists carry paths (`/JPEGImages/<id>.jpg /SegmentationPart/<id>.png`), whose stem is the id.
    """
    if not path.is_file():
        raise RefineError(f"missing split list {path}", hint="the archive is incomplete or not the official one")
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise RefineError(f"cannot read split list {path}: {error.strerror or error}") from None
    ids: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        sample_id = to_id(tokens[0])
        try:
            validate_sample_id(sample_id)
        except ValueError:
            raise RefineError(f"{path} line {number}: {sample_id!r} is not a valid sample id") from None
        if sample_id not in seen:
            seen.add(sample_id)
            ids.append(sample_id)
    if not ids:
        raise RefineError(f"split list {path} is empty", hint="the archive is incomplete or not the official one")
    return ids
