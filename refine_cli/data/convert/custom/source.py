"""What every shape-based own-data source (labelme, Label Studio, YOLO, Cityscapes polygons) hands the converter.

A source module reads its files in `scan_*` (main process: classes, samples, splits, every problem
listed up front) and draws one sample in `convert_*` (a worker). `SourceScan` is the first's result; the
converter then applies `--map`, gives each work item the `ClassValues` to draw with, and plans the splits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.convert.custom.class_files import ClassList, is_background, make_class_list
from refine_cli.data.convert.custom.layout import SPLIT_DIRS
from refine_cli.errors import RefineError


@dataclass
class SourceScan:
    """A source's classes (before --map), samples (id, work-item arguments), splits, files and findings."""

    kind: str
    classes: ClassList
    samples: list[tuple[str, tuple[Any, ...]]]
    splits: dict[str, list[str]] | None
    files: list[Path]
    problems: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    background_by_construction: bool = True  # class 0 is "what no shape covers" (auto class lists, YOLO)


@dataclass
class LabelUse:
    """Which files use which label names (the first few files per label), for the class list and its checks."""

    files: dict[str, list[str]] = field(default_factory=dict)

    def add(self, label: str, where: str) -> None:
        users = self.files.setdefault(label, [])
        if len(users) < 3 and where not in users:
            users.append(where)


def split_of(relative: Path) -> str | None:
    """`train/a.json` -> train, `val/x/b.json` -> val (valid, validation too); None when not in a split folder."""
    return SPLIT_DIRS.get(relative.parts[0].lower()) if len(relative.parts) > 1 else None


def classes_for(
    used: LabelUse, given: ClassList | None, unknown_as_ignore: bool, tool: str
) -> tuple[ClassList, list[str]]:
    """(the class list, notes): `given` checked against the labels found, or background + the labels, sorted.

    A label in no given class stops the run with the labels and files listed, unless `unknown_as_ignore`.
    """
    if given is None:
        found = sorted(label for label in used.files if not is_background(label) and label != "__ignore__")
        background = next((label for label in used.files if is_background(label)), "background")
        classes = make_class_list([(name, None) for name in [background, *found]], f"the {tool} labels")
        shown = ", ".join(classes.names[:20]) + (
            f" and {len(classes.names) - 20} more" if len(classes.names) > 20 else ""
        )
        notes = [f"classes from the {tool} labels, sorted: {shown} (pass --classes FILE to choose names and order)"]
        ignored = ("__ignore__",) if "__ignore__" in used.files else ()
        return ClassList(classes.names, classes.colors, classes.file_order, ignored), notes
    known = set(given.names) | set(given.ignored)
    unknown = sorted(label for label in used.files if label not in known and not _is_class_zero(label, given))
    if not unknown:
        return given, []
    listed = "; ".join(f"{label!r} in {', '.join(used.files[label])}" for label in unknown[:8])
    more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
    if not unknown_as_ignore:
        raise RefineError(
            f"{len(unknown)} {tool} label(s) are in no class of --classes: {listed}{more}",
            hint="add them to the class file, map them with --map, or pass --unknown-as-ignore to make them 255",
        )
    return given, [f"{tool} labels in no class became ignore (255): {', '.join(unknown[:8])}{more}"]


def _is_class_zero(label: str, classes: ClassList) -> bool:
    """labelme's `_background_` shapes are the class list's `background` (and the other way round)."""
    return is_background(label) and is_background(classes.names[0])


def no_background_note(classes: ClassList, by_construction: bool) -> list[str]:
    """The note for a class list without background: what no shape covers becomes ignore."""
    if by_construction or is_background(classes.names[0]):
        return []
    return [
        f"the class list has no `background`, so pixels no shape covers are ignore (255); class 0 is "
        f"{classes.names[0]!r}"
    ]


def compose_exclusive(
    regions: Iterable[tuple[int, np.ndarray, bool]], height: int, width: int, background: int
) -> np.ndarray:
    """Regions (value, HxW bool mask, crowd) -> label: where two DIFFERENT values claim a pixel it is 255,
    and crowd regions are 255 (the COCO rule, which Label Studio exports share); the rest is `background`.

    Values are the ones after --map, so two classes merged into one never conflict.
    """
    label = np.full((height, width), background, dtype=np.uint8)
    claimed = np.zeros((height, width), dtype=bool)
    conflict = np.zeros((height, width), dtype=bool)
    crowd = np.zeros((height, width), dtype=bool)
    for value, mask, is_crowd in regions:
        if is_crowd:
            crowd |= mask
            continue
        conflict |= mask & claimed & (label != value)
        label[mask & ~claimed] = value
        claimed |= mask
    label[conflict | crowd] = 255
    return label
