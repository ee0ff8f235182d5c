"""Image-size statistics of a unified dataset: what training sizes its crops from.

`refine prepare` records them in meta.json (`image_sizes`); a dataset made by an older refine gets
them computed on first use, from the label PNG headers (labels have their image's size, which
`refine check` enforces), and stored back into meta.json when the folder is writable. Reading a
header costs microseconds, so even 100,000 samples take seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refine_cli.errors import RefineError

if TYPE_CHECKING:
    from refine_cli.data.format.unified import UnifiedDataset

_AXES = ("height", "width", "short_side")


@dataclass(frozen=True)
class ImageSizes:
    """min / median / max of image height, width and short side (pixels) over `samples` images."""

    samples: int
    height: tuple[int, int, int]
    width: tuple[int, int, int]
    short_side: tuple[int, int, int]

    @property
    def median_short_side(self) -> int:
        return self.short_side[1]

    def describe(self) -> str:
        """'96x128 median (64x80 to 480x640)' for notes and the plan line."""
        (h_min, h_med, h_max), (w_min, w_med, w_max) = self.height, self.width
        if (h_min, w_min) == (h_max, w_max):
            return f"all {h_med}x{w_med}"
        return f"{h_med}x{w_med} median, {h_min}x{w_min} to {h_max}x{w_max}"

    def to_dict(self) -> dict[str, Any]:
        stats = {axis: dict(zip(("min", "median", "max"), getattr(self, axis), strict=True)) for axis in _AXES}
        return {"samples": self.samples, **stats}

    @classmethod
    def from_dict(cls, data: Any, where: str = "meta.json") -> ImageSizes:
        """Parse meta.json's `image_sizes`; RefineError naming the file when its shape is wrong."""
        try:
            values = {axis: tuple(int(data[axis][key]) for key in ("min", "median", "max")) for axis in _AXES}
            samples = int(data["samples"])
        except (TypeError, KeyError, ValueError):
            raise RefineError(
                f"{where}: image_sizes must hold samples and min/median/max of {', '.join(_AXES)}",
                hint="delete the image_sizes entry (it is computed again) or prepare the dataset again",
            ) from None
        if samples < 1 or any(not 0 < low <= mid <= high for low, mid, high in values.values()):
            raise RefineError(f"{where}: image_sizes holds impossible sizes {data!r}", hint="delete that entry")
        return cls(samples, values["height"], values["width"], values["short_side"])


def measure_image_sizes(label_paths: Iterable[Path]) -> ImageSizes | None:
    """Statistics over the label PNGs' headers (no pixel decoded); None when there are no samples."""
    from refine_cli.data.format.unified import png_size

    sizes = np.array([png_size(Path(path)) for path in label_paths], dtype=np.int64).reshape(-1, 2)
    if not len(sizes):
        return None
    columns = {"height": sizes[:, 0], "width": sizes[:, 1], "short_side": sizes.min(axis=1)}
    # the lower median: a size some image really has, not the mean of two
    stats = {k: (int(v.min()), int(np.sort(v)[(len(v) - 1) // 2]), int(v.max())) for k, v in columns.items()}
    return ImageSizes(len(sizes), stats["height"], stats["width"], stats["short_side"])


def dataset_image_sizes(source: UnifiedDataset) -> ImageSizes | None:
    """The dataset's statistics: from meta.json, else measured now (and written back when possible)."""
    from refine_cli.data.format.unified import META_FILE

    where = str(source.path / META_FILE)
    if source.meta.image_sizes:
        return ImageSizes.from_dict(source.meta.image_sizes, where)
    ids = sorted({i for split in source.splits for i in source.split_ids(split)})
    try:
        sizes = measure_image_sizes(source.label_path(i) for i in ids)
    except (OSError, ValueError):  # a damaged dataset: training reports the sample with its own message
        return None
    if sizes is not None:
        _store(source.path / META_FILE, sizes)
        source.meta.image_sizes = sizes.to_dict()
    return sizes


def _store(meta_file: Path, sizes: ImageSizes) -> None:
    """Add `image_sizes` to meta.json atomically, unless it changed since it was read or cannot be written."""
    from refine_cli.fileio import write_json_atomic

    try:
        data = json.loads(meta_file.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("image_sizes"):
            return
        write_json_atomic(meta_file, {**data, "image_sizes": sizes.to_dict()})
    except (OSError, ValueError):  # a read-only dataset is still usable: the numbers are computed each time
        return
