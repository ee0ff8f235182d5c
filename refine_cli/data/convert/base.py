"""The converter contract: raw dataset files in, unified samples out.

A converter is split in two so conversion can run in worker processes: `plan()` runs once in the
main process (reads lists, decides splits, builds picklable work items) and `convert()` is a pure
function of one work item that returns the label array and the image bytes or source file. The
pipeline owns everything else (writing, resuming, skipping, reporting), so a new dataset is only
its own quirks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class DatasetSpec:
    """What a converted dataset is: class names in model order, viewing palette, ignore value."""

    name: str
    classes: list[str]
    palette: list[tuple[int, int, int]]
    ignore_index: int = 255
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class WorkItem:
    """One sample to convert; `args` must be picklable because it crosses process boundaries."""

    sample_id: str
    args: tuple[Any, ...]


@dataclass
class ConvertedSample:
    """A converted sample: label already mapped to [0, C) or ignore, and where the image comes from.

    Give `image_src` when the source is already a JPEG/PNG file (its bytes are copied unchanged),
    or `image_bytes` + `image_ext` when the image had to be decoded/encoded (e.g. from a .mat file).
    """

    label: np.ndarray
    image_src: Path | None = None
    image_bytes: bytes | None = None
    image_ext: str = "jpg"


@dataclass
class Plan:
    """Everything `plan()` decided: the spec, the split lists, the work, and drops known up front.

    `bad` are problems found while planning (e.g. an image without a mask): fatal, listed together,
    unless --skip-bad. `sources` are the meta.json records of a converter without a manifest.
    """

    spec: DatasetSpec
    splits: dict[str, list[str]]
    items: list[WorkItem]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)


class SkipSample(Exception):  # noqa: N818 - it is a signal, not a failure
    """An intentional drop (e.g. a COCO image with too little VOC foreground): counted and reported."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SampleError(Exception):
    """Bad input for one sample (unreadable image, label of the wrong size): fatal unless --skip-bad."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Converter(ABC):
    """Base class of every dataset converter; register subclasses with `@register_converter`."""

    name: str = ""
    manifest: str = ""  # empty: local sources (refine prepare custom), nothing fetched
    version: str = "1"

    sources: tuple[str, ...] = ()  # the manifest source keys a conversion reads

    def required_sources(self, options: dict[str, Any]) -> list[str]:
        """Manifest source keys needed for these options (override when they depend on options: VOC --aug)."""
        return list(self.sources)

    def dataset_name(self, options: dict[str, Any]) -> str:
        """The folder name under --root that these options write (the converter's name unless it takes one)."""
        return self.name

    def local_inputs(self, options: dict[str, Any]) -> list[Path]:
        """Files and folders a manifest-less converter reads (e.g. --from), so outputs never land on them."""
        return []

    @abstractmethod
    def plan(self, sources: dict[str, Path], options: dict[str, Any]) -> Plan:
        """Read lists/annotations from the fetched sources (key -> extracted dir or file) and plan the work.

        May raise RefineError when the raw data does not look as expected (e.g. a wrong split count).
        """

    @staticmethod
    @abstractmethod
    def convert(item: WorkItem) -> ConvertedSample:
        """Convert one sample; runs in a worker process, so it may only depend on `item`."""
