"""ConfusionMatrix against hand-computed examples, the error cases, and DDP/merge accumulation."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch

from refine_cli.engine.eval.metrics import ConfusionMatrix, scores_from_matrix
from refine_cli.errors import RefineError


def test_hand_computed_scores_with_ignore() -> None:
    label = np.array([[0, 0, 1, 1], [0, 2, 2, 255]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 1], [0, 2, 0, 2]], dtype=np.int64)
    cm = ConfusionMatrix(3)
    cm.update(pred, label)
    # rows=label: class0 -> [2,1,0]; class1 -> [0,2,0]; class2 -> [1,0,1]; the 255 pixel is dropped
    assert cm.to_numpy().tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 1]]
    s = cm.compute()
    assert s.num_pixels == 7
    assert s.pixel_acc == pytest.approx(5 / 7)
    assert s.iou.tolist() == pytest.approx([2 / 4, 2 / 3, 1 / 2])
    assert s.acc.tolist() == pytest.approx([2 / 3, 1.0, 1 / 2])
    assert s.miou == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert s.mean_acc == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    assert s.fwiou == pytest.approx(3 / 7 * 1 / 2 + 2 / 7 * 2 / 3 + 2 / 7 * 1 / 2)
    assert s.skipped == []


def test_absent_class_is_nan_and_skipped_predicted_only_counts_zero() -> None:
    label = np.array([0, 0, 1, 1], dtype=np.uint8)
    pred = np.array([0, 3, 1, 1], dtype=np.uint8)  # class 3 only predicted, class 2 absent everywhere
    cm = ConfusionMatrix(4)
    cm.update(pred, label)
    s = cm.compute()
    assert math.isnan(s.iou[2]) and s.skipped == [2]
    assert s.iou[3] == 0.0 and math.isnan(s.acc[3])  # no label pixel: recall undefined
    assert s.miou == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert s.mean_acc == pytest.approx((1 / 2 + 1) / 2)
    per_class = s.per_class(["bg", "a", "b", "c"])
    assert per_class[2] == {"name": "b", "iou": None, "acc": None}
    assert s.summary()["skipped_classes"] == [2]


def test_torch_and_numpy_inputs_agree_and_batches_accumulate() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 5, size=(3, 17, 23)).astype(np.uint8)
    label[:, :2] = 255
    pred = rng.integers(0, 5, size=(3, 17, 23))
    whole, parts = ConfusionMatrix(5), ConfusionMatrix(5)
    whole.update(torch.from_numpy(pred), torch.from_numpy(label))
    for index in range(3):
        parts.update(pred[index], label[index].astype(np.int64))  # int64 labels take the general path
    assert np.array_equal(whole.to_numpy(), parts.to_numpy())
    valid = label != 255
    expected = np.bincount(label[valid].astype(int) * 5 + pred[valid], minlength=25).reshape(5, 5)
    assert np.array_equal(whole.to_numpy(), expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_label_out_of_range_is_an_error_naming_the_value(dtype: type) -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(RefineError, match="label value 7"):
        cm.update(np.zeros((2, 2), dtype=np.uint8), np.array([[0, 7], [1, 255]], dtype=dtype))


def test_prediction_out_of_range_and_shape_mismatch_are_errors() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(RefineError, match="class 3"):
        cm.update(np.array([0, 3]), np.array([0, 1], dtype=np.uint8))
    with pytest.raises(RefineError, match="does not match"):
        cm.update(np.zeros((2, 3), dtype=np.int64), np.zeros((3, 2), dtype=np.uint8))
    with pytest.raises(RefineError, match="integer"):
        cm.update(np.zeros(3, dtype=np.float32), np.zeros(3, dtype=np.uint8))


def test_empty_matrix_gives_nan_not_a_crash() -> None:
    s = ConfusionMatrix(2).compute()
    assert math.isnan(s.miou) and math.isnan(s.pixel_acc) and s.skipped == [0, 1]
    assert scores_from_matrix(np.eye(2, dtype=np.int64)).miou == 1.0


def test_merge_adds_counts() -> None:
    a, b = ConfusionMatrix(2), ConfusionMatrix(2)
    a.update(np.array([0, 1]), np.array([0, 0], dtype=np.uint8))
    b.update(np.array([1, 1]), np.array([1, 1], dtype=np.uint8))
    assert a.merge(b).to_numpy().tolist() == [[1, 1], [0, 2]]
    with pytest.raises(ValueError):
        a.merge(ConfusionMatrix(3))


def _ddp_worker(rank: int, world: int, port: int, queue) -> None:  # noqa: ANN001 - mp.Queue
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        cm = ConfusionMatrix(3)
        # each rank sees a different shard: rank r labels everything r and predicts 0
        cm.update(np.zeros(4, dtype=np.int64), np.full(4, rank, dtype=np.uint8))
        cm.reduce_distributed()
        queue.put((rank, cm.to_numpy().tolist()))
    finally:
        dist.destroy_process_group()


def test_reduce_distributed_sums_over_ranks_once() -> None:
    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.start_processes(_ddp_worker, args=(2, port, queue), nprocs=2, start_method="spawn", join=True)
    results = dict(queue.get(timeout=30) for _ in range(2))
    expected = [[4, 0, 0], [4, 0, 0], [0, 0, 0]]
    assert results == {0: expected, 1: expected}
    # without an initialised process group it is a no-op
    single = ConfusionMatrix(3)
    single.update(np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.uint8))
    assert single.reduce_distributed().to_numpy()[0, 0] == 2


def test_scoring_runs_on_one_thread_and_restores_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    bincount = torch.bincount

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003
        seen.append(torch.get_num_threads())
        return bincount(*args, **kwargs)

    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(torch, "bincount", spy)
        label = torch.tensor([[0, 1], [2, 255]], dtype=torch.uint8)
        matrix = ConfusionMatrix(3)
        matrix.update(torch.tensor([[0, 2], [2, 0]]), label)
        assert seen == [1] and torch.get_num_threads() == 2
        assert matrix.to_numpy().tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 1]]
    finally:
        torch.set_num_threads(saved)
