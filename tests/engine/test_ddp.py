"""DDP on the CPU (gloo, 2 processes): one step on a split batch equals one step on the whole batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from refine_cli.engine.train.config import resolve_config
from refine_cli.engine.train.distributed import DistContext, init_distributed, shutdown
from refine_cli.engine.train.optim import build_optimizer, build_scheduler
from refine_cli.engine.train.step import TrainStep
from refine_cli.models import create_model, freeze_batchnorm_stats
from tests.support.tiny_seg import make_tiny_dataset

REPO = Path(__file__).resolve().parents[2]
BATCH, CROP, CLASSES = 4, 32, 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (BATCH, CROP, CROP, 3), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, CLASSES, (BATCH, CROP, CROP), dtype=torch.uint8, generator=generator)
    return images, labels  # no ignore pixels: every rank's mean is over the same pixel count


def _one_step(ctx: DistContext, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model("lw-refinenet-mobilenetv2", num_classes=CLASSES)
    model.train()
    freeze_batchnorm_stats(model)  # frozen BN: the per-rank halves see the same normalisation
    cfg = resolve_config(overrides={"optim.encoder_lr": 0.05, "optim.grad_clip": 10.0})
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, total_steps=10)
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if ctx.enabled else model
    TrainStep(wrapped, optimizer, scheduler, ctx, grad_clip=cfg.optim.grad_clip)(images, labels)
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    os.environ["LOCAL_RANK"] = str(rank)
    ctx = init_distributed("cpu")
    images, labels = _fixed_batch()
    share = BATCH // world
    state = _one_step(ctx, images[rank * share : (rank + 1) * share], labels[rank * share : (rank + 1) * share])
    if rank == 0:
        torch.save(state, out)
    shutdown(ctx)


@pytest.mark.usefixtures("one_torch_thread")  # as the workers run: the same kernels, the same sums
def test_ddp_step_equals_single_process_step(tmp_path: Path) -> None:
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    single = _one_step(DistContext(), *_fixed_batch())
    ddp = torch.load(out, weights_only=True)
    for key, value in single.items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-4, atol=1e-6, msg=key)
    torch.manual_seed(0)
    initial = create_model("lw-refinenet-mobilenetv2", num_classes=CLASSES).state_dict()
    assert not torch.allclose(
        initial["classifier.weight"], single["classifier.weight"]
    )  # the step did move the weights


@pytest.mark.slow  # torchrun and two ranks that each import torch: ~10 s on two cores
@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo on loopback")
def test_torchrun_two_processes_end_to_end(tmp_path: Path) -> None:
    data = make_tiny_dataset(tmp_path, train=8, val=3, size=(40, 48))
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
        "-m", "refine_cli", "train", "--data", str(data), "--out", str(run), "--model", "lw-refinenet-mobilenetv2",
        "--iters", "2", "--val-every", "2", "--batch", "2", "--crop", "32", "--workers", "0", "--device", "cpu",
        "--set", "data.min_short_side=null", "--json", str(tmp_path / "summary.json"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["epochs"] == 1.0  # 8 samples = 2 steps of 2 per rank x 2 ranks
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows if r["kind"] == "val"] == ["val"]  # written once, by rank 0
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # TensorBoard too: rank 0 only
    # the sharded validation equals a single-process evaluation of the saved weights (no double counting)
    from refine_cli.data.format.unified import UnifiedDataset
    from refine_cli.engine.eval.evaluator import evaluate
    from refine_cli.models.checkpoint import load_checkpoint

    model = load_checkpoint(run / "last.pt").build_model()
    report = evaluate(model, UnifiedDataset(data), "val", device="cpu", progress=False)
    assert report.num_images == 3
    assert summary["last_val"]["miou"] == pytest.approx(report.miou, abs=1e-9)


def test_explicit_gpu_index_under_torchrun_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from refine_cli.engine.train.distributed import init_distributed
    from refine_cli.errors import RefineError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(RefineError, match="same GPU"):
        init_distributed("cuda:0")
