"""Validation of a unified dataset (`refine check`): structure, sizes, label values, histogram.

Checks what training and evaluation silently depend on: every image has a label of the same size,
label values are classes or ignore, split files name existing samples, and counts match meta.json.
Samples are checked in parallel; image sizes come from headers (no decode) unless `full` is set.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.format.imageio import ImageReadError, image_size, read_label, verify_decodes
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.errors import RefineError
from refine_cli.workers import die_with_parent, pool_size

MAX_LISTED = 20  # problems kept verbatim; the rest are only counted
_CHUNK = 64


@dataclass
class CheckReport:
    """What `check_dataset` found: sizes, per-class pixel histogram and every problem."""

    path: str
    name: str
    classes: list[str]
    ignore_index: int
    samples: int
    splits: dict[str, int]
    class_pixels: list[int]
    class_images: list[int]
    ignore_pixels: int
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    @property
    def total_pixels(self) -> int:
        return sum(self.class_pixels) + self.ignore_pixels

    def shares(self) -> list[float]:
        """Each class's share of all label pixels, ignore included, in %: one number for the table, JSON and chart."""
        total = max(self.total_pixels, 1)
        return [100 * pixels / total for pixels in self.class_pixels]

    @property
    def ignore_share(self) -> float:
        """The ignore value's share of all label pixels, in % (the rest of `shares()` up to 100)."""
        return 100 * self.ignore_pixels / max(self.total_pixels, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "name": self.name,
            "ok": self.ok,
            "samples": self.samples,
            "splits": self.splits,
            "classes": [
                {"index": i, "name": name, "pixels": px, "fraction": share / 100, "images": n}
                for i, (name, px, share, n) in enumerate(
                    zip(self.classes, self.class_pixels, self.shares(), self.class_images, strict=True)
                )
            ],
            "ignore_index": self.ignore_index,
            "ignore_pixels": self.ignore_pixels,
            "problem_count": self.problem_count,
            "problems": self.problems,
            "seconds": round(self.seconds, 3),
        }


class _Problems:
    def __init__(self) -> None:
        self.listed: list[str] = []
        self.count = 0

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append(message)


def _image_size(path: Path, full: bool) -> tuple[int, int]:
    """(height, width) from the header, or after decoding every byte of the image when `full`."""
    if full:
        header = verify_decodes(path)
        return header.height, header.width
    return image_size(path)


def _check_chunk(
    root: str, pairs: list[tuple[str, str]], num_classes: int, ignore_index: int, full: bool
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Check (id, image file) pairs; return the 256-bin histogram, per-value image counts, problems."""
    images_dir = Path(root) / "images"
    labels_dir = Path(root) / "labels"
    hist = np.zeros(256, dtype=np.int64)
    present = np.zeros(256, dtype=np.int64)
    problems: list[str] = []
    valid = np.zeros(256, dtype=bool)
    valid[:num_classes] = True
    valid[ignore_index] = True
    for sample_id, image_name in pairs:
        label_file = labels_dir / f"{sample_id}.png"
        try:
            label = read_label(label_file)
        except RefineError as error:
            problems.append(error.message)
            continue
        try:
            image_hw = _image_size(images_dir / image_name, full)
        except ImageReadError as error:
            problems.append(error.message)
            continue
        if tuple(label.shape) != image_hw:
            problems.append(
                f"label {label_file} is {label.shape[1]}x{label.shape[0]} but its image is {image_hw[1]}x{image_hw[0]}"
            )
        counts = np.bincount(label.ravel(), minlength=256)
        bad = np.flatnonzero((counts > 0) & ~valid)
        if bad.size:
            values = ", ".join(str(v) for v in bad[:8])
            problems.append(f"label {label_file} has values outside [0, {num_classes}) and {ignore_index}: {values}")
        hist += counts
        present += counts > 0
    return hist, present, problems


def check_dataset(path: Path | str, workers: int = 1, full: bool = False, progress: bool = False) -> CheckReport:
    """Validate the unified dataset at `path`; problems are reported, not raised (see CheckReport.ok)."""
    start = time.perf_counter()
    dataset = UnifiedDataset(path)
    meta = dataset.meta
    problems = _Problems()
    images = dataset.image_files()
    labels = set(dataset.label_ids())
    for sample_id in sorted(set(images) - labels):
        problems.add(f"image {dataset.images_dir / images[sample_id]} has no label")
    for sample_id in sorted(labels - set(images)):
        problems.add(f"label {dataset.labels_dir / (sample_id + '.png')} has no image")
    split_counts = _check_splits(dataset, labels & set(images), problems)
    pairs = [(sample_id, images[sample_id]) for sample_id in sorted(labels & set(images))]
    hist, present = _check_pairs(dataset, pairs, problems, workers, (full, progress))
    num = meta.num_classes
    return CheckReport(
        path=str(dataset.path),
        name=meta.name,
        classes=list(meta.classes),
        ignore_index=meta.ignore_index,
        samples=len(pairs),
        splits=split_counts,
        class_pixels=[int(v) for v in hist[:num]],
        class_images=[int(v) for v in present[:num]],
        ignore_pixels=int(hist[meta.ignore_index]),
        problems=problems.listed,
        problem_count=problems.count,
        seconds=time.perf_counter() - start,
    )


def _check_splits(dataset: UnifiedDataset, complete: set[str], problems: _Problems) -> dict[str, int]:
    """Every split file against the samples that have an image and a label, and against meta.json's counts."""
    meta = dataset.meta
    split_counts: dict[str, int] = {}
    for split in dataset.splits:
        ids = dataset.split_ids(split)
        split_counts[split] = len(ids)
        if len(set(ids)) != len(ids):
            problems.add(f"split {split!r} lists {len(ids) - len(set(ids))} sample(s) more than once")
        for sample_id in ids:
            if sample_id not in complete:
                problems.add(f"split {split!r} names sample {sample_id!r}, which does not exist")
        expected = meta.splits.get(split)
        if expected is None:
            problems.add(f"split file {split}.txt is not listed in meta.json")
        elif expected != len(ids):
            problems.add(f"split {split!r} has {len(ids)} samples but meta.json says {expected}")
    for split in sorted(set(meta.splits) - set(split_counts)):
        problems.add(f"meta.json lists split {split!r} but splits/{split}.txt does not exist")
    return split_counts


def _check_pairs(
    dataset: UnifiedDataset, pairs: list[tuple[str, str]], problems: _Problems, workers: int, how: tuple[bool, bool]
) -> tuple[np.ndarray, np.ndarray]:
    """Decode every (id, image file) pair with its label in `workers` processes: (class pixel histogram,
    images per class) over 256 values; `how` is (full check, progress bar)."""
    from tqdm import tqdm

    full, progress = how
    meta = dataset.meta
    chunks = [pairs[i : i + _CHUNK] for i in range(0, len(pairs), _CHUNK)]
    args = (str(dataset.path), meta.num_classes, meta.ignore_index, full)
    hist = np.zeros(256, dtype=np.int64)
    present = np.zeros(256, dtype=np.int64)
    bar = tqdm(total=len(pairs), desc=f"check {meta.name}", unit=" samples", disable=not progress, leave=False)
    workers = pool_size(workers, len(chunks))
    pool = ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent) if workers > 1 else None
    try:
        if pool is None:
            results = (_check_chunk(args[0], chunk, *args[1:]) for chunk in chunks)
        else:
            results = pool.map(_check_chunk, *zip(*[(args[0], chunk, *args[1:]) for chunk in chunks], strict=True))
        for (chunk_hist, chunk_present, chunk_problems), chunk in zip(results, chunks, strict=True):
            hist += chunk_hist
            present += chunk_present
            for message in chunk_problems:
                problems.add(message)
            bar.update(len(chunk))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    bar.close()
    return hist, present


RARE_FRACTION = 0.005  # a class under 0.5 % of the labelled pixels gets a note


def class_balance_notes(classes: list[str], pixels: list[int], images: list[int] | None = None) -> list[str]:
    """Notes for classes that are absent or rare among the labelled (non-ignore) pixels.

    A model cannot learn a class it never sees, and a class under ~0.5 % of the pixels is usually
    drowned by the others: users should see that before hours of training, not in a poor per-class IoU.
    """
    total = sum(pixels)
    notes: list[str] = []
    for index, (name, count) in enumerate(zip(classes, pixels, strict=True)):
        seen = f" in {images[index]} image(s)" if images is not None else ""
        if count == 0:
            notes.append(f"class {index} {name!r} has no pixels: the model cannot learn it")
        elif total and count / total < RARE_FRACTION:
            notes.append(
                f"class {index} {name!r} is rare: {100 * count / total:.2f} % of the labelled pixels{seen} "
                "(consider `refine train --class-weights auto` or more examples)"
            )
    return notes
