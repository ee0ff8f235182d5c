"""Training loaders: a seeded, rank-aware epoch sampler and worker setup.

`EpochSampler` is a DistributedSampler that also knows the epoch and can skip the first batches of
an epoch: it yields `(epoch, index)` keys (the dataset seeds each sample's augmentation from them),
every rank gets the same number of full batches, and a resumed run starts exactly at the batch
where the interrupted one stopped.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from refine_cli.errors import RefineError
from refine_cli.workers import pool_size


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled `(epoch, index)` keys for one rank; full batches only, identical count on every rank."""

    def __init__(
        self, size: int, batch: int, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.size, self.batch, self.seed = size, batch, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.epoch = 0
        self.skip_batches = 0

    @property
    def batches_per_epoch(self) -> int:
        """Optimiser steps per epoch: the incomplete last global batch is dropped (as LW and DDP do)."""
        return self.size // (self.batch * self.world_size)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Select the epoch's permutation; `skip_batches` resumes in the middle of an epoch."""
        self.epoch = epoch
        self.skip_batches = skip_batches

    def indices(self) -> list[int]:
        """This rank's sample indices for the current epoch, in order (before skipping)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        used = order[: self.batches_per_epoch * self.batch * self.world_size]
        return used[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.indices()[self.skip_batches * self.batch :]:
            yield (self.epoch, index)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.skip_batches) * self.batch


def seed_worker(worker_id: int) -> None:
    """Seed numpy/random per worker from torch's per-worker seed.

    The loader's generator makes torch's worker seeds deterministic; each worker then derives its own
    python and numpy seeds from it (the recipe in the PyTorch reproducibility notes). OpenCV's thread
    count is deliberately not touched here: `cv2.setNumThreads` in a forked child of a process whose
    OpenCV thread pool is running deadlocks.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def build_train_loader(
    dataset: Dataset,
    batch: int,
    workers: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over `dataset` driven by an `EpochSampler` (reach it as `loader.batch_sampler.sampler`)."""
    size = len(dataset)  # type: ignore[arg-type]
    if size < batch * world_size:
        raise RefineError(
            f"the training split has {size} samples, fewer than one batch of {batch} x {world_size} process(es)",
            hint="lower --batch or use a larger split",
        )
    sampler = EpochSampler(size, batch, seed=seed, rank=rank, world_size=world_size)
    generator = torch.Generator().manual_seed(seed + rank)
    workers = pool_size(workers, size) if workers > 0 else 0  # samples are seeded by index: results unchanged
    return DataLoader(
        dataset,
        batch_sampler=BatchSampler(sampler, batch, drop_last=True),
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


def epoch_sampler(loader: DataLoader) -> EpochSampler:
    """The `EpochSampler` behind a loader made by `build_train_loader`."""
    sampler = loader.batch_sampler.sampler  # type: ignore[union-attr]
    assert isinstance(sampler, EpochSampler)
    return sampler
