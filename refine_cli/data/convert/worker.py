"""The per-sample work of `prepare`, run in worker processes: convert, validate, write atomically.

Validation lives here, not in each converter, so every dataset gets the same guarantees: the label is
a uint8 HxW array of classes or ignore, the image decodes, and both have the same size. A sample
that fails is reported (not written), so the dataset never silently contains a bad pair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refine_cli.data.convert.base import ConvertedSample, SampleError, SkipSample, WorkItem
from refine_cli.data.convert.checks import size_mismatch
from refine_cli.data.format.imageio import ImageReadError, verify_decodes
from refine_cli.data.format.unified import UnifiedWriter, bad_label_values
from refine_cli.errors import RefineError


@dataclass(frozen=True)
class Outcome:
    """Result of one work item: status 'ok', 'skip' (intentional drop) or 'bad' (bad input)."""

    sample_id: str
    status: str
    reason: str = ""


def _image_data(sample: ConvertedSample) -> tuple[bytes, str, str]:
    """(bytes, extension, description) of the sample's image: read once, then validated and written as is."""
    if sample.image_src is not None:
        source = Path(sample.image_src)
        return source.read_bytes(), source.suffix.lstrip("."), str(source)
    if sample.image_bytes is not None:
        return bytes(sample.image_bytes), sample.image_ext, "image bytes"
    raise TypeError("converter returned neither image_src nor image_bytes")


def _validate(sample: ConvertedSample, num_classes: int, ignore_index: int) -> tuple[str | None, bytes, str]:
    """(why this sample must not be written or None, the image bytes, their extension).

    The bytes that are validated are the bytes that get written: no second read of the source.
    """
    label = sample.label
    if not isinstance(label, np.ndarray) or label.dtype != np.uint8 or label.ndim != 2:
        kind = f"{label.dtype} {label.shape}" if isinstance(label, np.ndarray) else type(label).__name__
        raise TypeError(f"converter returned a label that is not a 2-D uint8 array ({kind})")
    bad = bad_label_values(label, num_classes, ignore_index)
    if bad:
        values = ", ".join(map(str, bad[:8]))
        return f"label has values outside [0, {num_classes}) and {ignore_index}: {values}", b"", ""
    try:
        data, ext, where = _image_data(sample)
    except OSError as error:
        return f"cannot read image {sample.image_src}: {error.strerror or error}", b"", ""
    try:
        header = verify_decodes(data, name=where)
    except ImageReadError as error:
        return error.one_line(), b"", ""
    problem = size_mismatch(label.shape, where, (header.height, header.width), "label")
    if problem is not None:
        return problem, b"", ""
    return None, data, ext


def convert_chunk(
    convert: Callable[[WorkItem], ConvertedSample],
    writer: UnifiedWriter,
    palette: list[tuple[int, int, int]],
    num_classes: int,
    ignore_index: int,
    items: list[WorkItem],
) -> list[Outcome]:
    """Convert and write a chunk of samples; converter bugs raise (naming the sample), bad input is reported."""
    outcomes: list[Outcome] = []
    for item in items:
        try:
            sample = convert(item)
        except SkipSample as error:
            outcomes.append(Outcome(item.sample_id, "skip", error.reason))
            continue
        except SampleError as error:
            outcomes.append(Outcome(item.sample_id, "bad", error.reason))
            continue
        except RefineError as error:
            outcomes.append(Outcome(item.sample_id, "bad", error.one_line()))
            continue
        except Exception as error:
            raise RuntimeError(
                f"converter failed on sample {item.sample_id!r}: {type(error).__name__}: {error}"
            ) from error
        try:
            problem, data, ext = _validate(sample, num_classes, ignore_index)
        except TypeError as error:
            raise RuntimeError(f"sample {item.sample_id!r}: {error}") from None
        if problem is not None:
            outcomes.append(Outcome(item.sample_id, "bad", problem))
            continue
        try:
            writer.write_image_bytes(item.sample_id, data, ext)
        except ValueError as error:  # an extension the unified format does not store: a converter bug
            raise RuntimeError(f"sample {item.sample_id!r}: {error}") from None
        writer.write_label(item.sample_id, sample.label, palette)  # label last: it marks the sample complete
        outcomes.append(Outcome(item.sample_id, "ok"))
    return outcomes
