"""Training dataset + loader: sharding across ranks, resumable epochs, worker-independent augmentation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.data.load.dataset import SegmentationDataset
from refine_cli.data.load.loader import EpochSampler, build_train_loader, epoch_sampler
from refine_cli.data.load.transforms import TrainTransform
from refine_cli.errors import RefineError
from tests.support.tiny_seg import make_tiny_dataset


def test_ranks_get_disjoint_equal_full_batches() -> None:
    size, batch, world = 23, 3, 2
    samplers = [EpochSampler(size, batch, seed=1, rank=r, world_size=world) for r in range(world)]
    for epoch in range(3):
        parts = []
        for sampler in samplers:
            sampler.set_epoch(epoch)
            keys = list(sampler)
            assert all(e == epoch for e, _ in keys)
            assert len(keys) == len(sampler) == 3 * batch  # 23 // 6 = 3 steps
            parts.append({i for _, i in keys})
        assert not parts[0] & parts[1]
    samplers[0].set_epoch(0)
    first = samplers[0].indices()
    samplers[0].set_epoch(1)
    assert samplers[0].indices() != first  # reshuffled every epoch


def test_skip_batches_resumes_mid_epoch() -> None:
    sampler = EpochSampler(20, 4, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, skip_batches=3)
    assert list(sampler) == full[12:] and len(sampler) == 8


def test_dataset_samples_are_deterministic_per_epoch_and_index(tmp_path: Path) -> None:
    root = make_tiny_dataset(tmp_path, train=4, val=1)
    dataset = SegmentationDataset(UnifiedDataset(root), "train", TrainTransform(crop=32, min_short_side=None), seed=7)
    a, b, c = dataset[(0, 1)], dataset[(0, 1)], dataset[(1, 1)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(a["image"], c["image"])  # another epoch, another crop
    assert a["image"].shape == (32, 32, 3) and a["label"].dtype == torch.uint8 and a["problem"] == ""


def test_batches_do_not_depend_on_worker_count(tmp_path: Path) -> None:
    root = make_tiny_dataset(tmp_path, train=6, val=1)
    dataset = SegmentationDataset(UnifiedDataset(root), "train", TrainTransform(crop=24, min_short_side=None), seed=0)

    def epoch_batches(workers: int) -> list[dict]:
        loader = build_train_loader(dataset, batch=2, workers=workers, seed=5)
        epoch_sampler(loader).set_epoch(1)
        return list(loader)

    serial, parallel = epoch_batches(0), epoch_batches(2)
    assert len(serial) == 3
    for x, y in zip(serial, parallel, strict=True):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
        assert x["image"].shape == (2, 24, 24, 3)


def test_out_of_range_label_is_reported_with_sample_id(tmp_path: Path) -> None:
    root = make_tiny_dataset(tmp_path, train=3, val=1, bad_label=("train_001", 9))
    dataset = SegmentationDataset(UnifiedDataset(root), "train", TrainTransform(crop=16), seed=0)
    assert dataset[(0, 0)]["problem"] == ""
    problem = dataset[(0, 1)]["problem"]
    assert "train_001" in problem and "label value 9" in problem


def test_too_small_split_is_a_clear_error(tmp_path: Path) -> None:
    root = make_tiny_dataset(tmp_path, train=3, val=1)
    dataset = SegmentationDataset(UnifiedDataset(root), "train", TrainTransform(crop=16), seed=0)
    with pytest.raises(RefineError, match="fewer than one batch"):
        build_train_loader(dataset, batch=2, workers=0, seed=0, world_size=2)
