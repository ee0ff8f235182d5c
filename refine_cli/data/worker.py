"""The per-sample work of `prepare`, run in worker processes: convert, validate, write atomically.

Validation lives here, not in each converter, so every dataset gets the same guarantees: the label is
a uint8 HxW array of classes or ignore, the image decodes, and both have the same size. A sample
that fails is reported (not written), so the dataset never silently contains a bad pair.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refine_cli.data.converters.base import ConvertedSample, SampleError, SkipSample, WorkItem
from refine_cli.data.unified import UnifiedWriter
from refine_cli.errors import RefineError


@dataclass(frozen=True)
class Outcome:
    """Result of one work item: status 'ok', 'skip' (intentional drop) or 'bad' (bad input)."""

    sample_id: str
    status: str
    reason: str = ""


def _decoded_size(sample: ConvertedSample) -> tuple[int, int]:
    """(height, width) after fully decoding the image, so truncated files are caught now, not in training."""
    from PIL import Image

    source = sample.image_src if sample.image_src is not None else io.BytesIO(sample.image_bytes or b"")
    with Image.open(source) as image:
        image.load()
        width, height = image.size
    return height, width


def _validate(sample: ConvertedSample, num_classes: int, ignore_index: int) -> str | None:
    """Why this converted sample must not be written, or None."""
    label = sample.label
    if not isinstance(label, np.ndarray) or label.dtype != np.uint8 or label.ndim != 2:
        kind = f"{label.dtype} {label.shape}" if isinstance(label, np.ndarray) else type(label).__name__
        raise TypeError(f"converter returned a label that is not a 2-D uint8 array ({kind})")
    counts = np.bincount(label.ravel(), minlength=256)
    valid = np.zeros(256, dtype=bool)
    valid[:num_classes] = True
    valid[ignore_index] = True
    bad = np.flatnonzero((counts > 0) & ~valid)
    if bad.size:
        return f"label has values outside [0, {num_classes}) and {ignore_index}: {', '.join(map(str, bad[:8]))}"
    where = sample.image_src if sample.image_src is not None else "image bytes"
    try:
        height, width = _decoded_size(sample)
    except Exception as error:  # noqa: BLE001 - any decoder failure means an unreadable image
        return f"cannot read image {where}: {' '.join(str(error).split()) or type(error).__name__}"
    if (height, width) != label.shape:
        return f"label is {label.shape[1]}x{label.shape[0]} but image {where} is {width}x{height}"
    return None


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
            problem = _validate(sample, num_classes, ignore_index)
        except TypeError as error:
            raise RuntimeError(f"sample {item.sample_id!r}: {error}") from None
        if problem is not None:
            outcomes.append(Outcome(item.sample_id, "bad", problem))
            continue
        if sample.image_src is not None:
            writer.copy_image(item.sample_id, Path(sample.image_src))
        elif sample.image_bytes is not None:
            writer.write_image_bytes(item.sample_id, sample.image_bytes, sample.image_ext)
        else:
            raise RuntimeError(f"converter returned neither image_src nor image_bytes for {item.sample_id!r}")
        writer.write_label(item.sample_id, sample.label, palette)  # label last: it marks the sample complete
        outcomes.append(Outcome(item.sample_id, "ok"))
    return outcomes
