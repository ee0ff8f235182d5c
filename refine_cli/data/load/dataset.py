"""A torch Dataset over one split of a unified dataset, producing augmented uint8 training samples.

Samples are addressed by `(epoch, index)` (see `refine_cli.data.load.loader.EpochSampler`): the
augmentation RNG is seeded from (seed, epoch, index), so the same run always sees the same crops,
whether it uses 0 or 8 workers and whether or not it was resumed half-way.

Sample problems (unreadable image or label files, values outside [0, num_classes) and the ignore
index, image/label size mismatch) are reported in the sample's `problem` field instead of raised
inside a worker process, where the error would reach the user wrapped in a traceback; the trainer
turns the first one into a RefineError.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.data.load.transforms import TrainTransform
from refine_cli.errors import RefineError


class SegmentationDataset(Dataset):
    """One split of a unified dataset with a paired training transform."""

    def __init__(
        self,
        source: UnifiedDataset,
        split: str,
        transform: TrainTransform | None,
        seed: int = 0,
    ) -> None:
        self.source = source
        self.split = split
        self.ids = source.split_ids(split)
        self.transform = transform
        self.seed = int(seed)
        self.num_classes = source.meta.num_classes
        self.ignore_index = source.meta.ignore_index

    def __len__(self) -> int:
        return len(self.ids)

    def rng_for(self, epoch: int, index: int) -> np.random.Generator:
        """The augmentation RNG of one sample in one epoch: independent of workers and resumes."""
        return np.random.default_rng([self.seed, epoch, index])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        sample_id = self.ids[index]
        try:
            image = self.source.read_image(sample_id)
            label = self.source.read_label(sample_id)
        except RefineError as error:  # unreadable file: report it like a label problem, never raise in a worker
            image, label, problem = None, None, error.one_line()
        else:
            problem = self.check_label(sample_id, image, label)
        if problem:  # keep shapes collatable; the trainer stops on the problem before using the batch
            size = self.transform.crop if self.transform else 1
            image, label = np.zeros((size, size, 3), np.uint8), np.zeros((size, size), np.uint8)
        elif self.transform is not None:
            image, label = self.transform(image, label, self.rng_for(epoch, index))
        return {
            "image": torch.from_numpy(image),
            "label": torch.from_numpy(label),
            "index": index,
            "problem": problem,
        }

    def check_label(self, sample_id: str, image: np.ndarray, label: np.ndarray) -> str:
        """'' when the sample is usable, else a one-line description naming the sample."""
        where = f"sample {sample_id!r} of split {self.split!r}"
        if image.shape[:2] != label.shape:
            (ih, iw), (lh, lw) = image.shape[:2], label.shape
            return f"{where}: image is {iw}x{ih} but its label is {lw}x{lh}"
        if label.size and int(label.max()) >= self.num_classes:
            values = np.unique(label[label >= self.num_classes])
            bad = [int(v) for v in values if v != self.ignore_index]
            if bad:
                return (
                    f"{where}: label value {bad[0]} is out of range "
                    f"(classes 0..{self.num_classes - 1}, ignore {self.ignore_index})"
                )
        return ""
