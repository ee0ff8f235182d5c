"""Class lists and colour maps, and the checks every class table passes (datasets and checkpoints alike).

A neutral module below both `data/` and `models/`: a checkpoint's default VOC names and colours and a
dataset's meta.json are checked by the same rules, without `models/` importing `data/`.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from refine_cli.errors import RefineError

# Labels are uint8 with 255 kept for "ignore", so at most 255 classes fit.
MAX_CLASSES = 255
MAX_NAME_LENGTH = 200
# C0 controls (tab and newline included: a class name is one line), DEL and the C1 controls
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")

VOC_CLASSES: list[str] = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


def voc_palette(n: int = 256) -> list[tuple[int, int, int]]:
    """The standard PASCAL VOC bit-interleaved colour map (class k -> RGB), n entries."""
    colors = []
    for k in range(n):
        r = g = b = 0
        c = k
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colors.append((r, g, b))
    return colors


def is_int(value: Any) -> bool:
    """A real integer (bool is an int to Python, but never a count or an index here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_num_classes(value: Any, field: str, where: str, hint: str) -> int:
    """A class count from a file: an integer in [1, MAX_CLASSES]; a zero-class table is refused as such.

    These checks name `field` of the file `where`; `hint` says how to get a good file again.
    """
    if not is_int(value):
        raise RefineError(f"{where}: {field} must be an integer, not {value!r}", hint=hint)
    if value < 1:
        raise RefineError(f"{where}: {field} is {value}: it defines no classes", hint=hint)
    if value > MAX_CLASSES:
        raise RefineError(f"{where}: {field} is {value}; labels hold at most {MAX_CLASSES} classes", hint=hint)
    return value


def check_class_name(name: Any, where: str, hint: str) -> str:
    """A class name is printed, drawn and written to files: non-blank text without control characters.

    A newline, NUL or terminal escape sequence in a name would break tables and reports or drive the
    terminal, so it is refused; the message shows the name with its control characters escaped.
    """
    if not isinstance(name, str):
        raise RefineError(f"{where}: class names must be text, not {name!r}", hint=hint)
    if not name.strip():
        raise RefineError(f"{where}: a class name is empty ({name!r})", hint=hint)
    if CONTROL_CHARACTERS.search(name):
        raise RefineError(f"{where}: the class name {ascii(name)} contains control characters", hint=hint)
    if len(name) > MAX_NAME_LENGTH:
        raise RefineError(f"{where}: the class name {name[:20]!r}... is over {MAX_NAME_LENGTH} characters", hint=hint)
    return name


def check_class_names(value: Any, num_classes: int, field: str, where: str, hint: str) -> list[str]:
    """One name per class, each a valid class name, none twice."""
    if not isinstance(value, list):
        raise RefineError(f"{where}: {field} must be a list of class names", hint=hint)
    if len(value) != num_classes:
        raise RefineError(f"{where}: {field} has {len(value)} names for {num_classes} classes", hint=hint)
    for name in value:
        check_class_name(name, f"{where}: {field}", hint)
    repeated = sorted(name for name, count in Counter(value).items() if count > 1)
    if repeated:
        raise RefineError(f"{where}: {field} names {', '.join(map(repr, repeated))} more than once", hint=hint)
    return list(value)


def check_palette(
    value: Any, num_classes: int, field: str, where: str, hint: str, exact: bool = True
) -> list[list[int]]:
    """[[r, g, b], ...] with 0..255 channels: one colour per class (`exact`), or at least that many (<= 256)."""
    if not isinstance(value, (list, tuple)):
        raise RefineError(f"{where}: {field} must be a list of [r, g, b] colours", hint=hint)
    for index, colour in enumerate(value):
        if (
            not isinstance(colour, (list, tuple))
            or len(colour) != 3
            or not all(is_int(channel) and 0 <= channel <= 255 for channel in colour)
        ):
            raise RefineError(
                f"{where}: {field}[{index}] must be [r, g, b] with integers 0..255, not {colour!r}", hint=hint
            )
    count_ok = len(value) == num_classes if exact else num_classes <= len(value) <= 256
    if not count_ok:
        raise RefineError(f"{where}: {field} has {len(value)} colours for {num_classes} classes", hint=hint)
    return [[int(channel) for channel in colour] for colour in value]
