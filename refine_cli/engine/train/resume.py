"""Exact resume of a training run: the record last.pt carries besides the weights, written and read here.

`resume_record` and `apply_resume_record` are mirror images, so the record's format lives in one place:
the optimiser, schedule and loss-scaler states, the step, the best validation score so far, the time
trained and every rank's random states. On resume this run's configuration wins over the saved
hyper-parameters, so `--resume --lr X` really trains with X (and the config files never claim what was
not used).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from refine_cli.engine.train import run_files
from refine_cli.engine.train.distributed import DistContext
from refine_cli.errors import RefineError
from refine_cli.models.checkpoint import Checkpoint, load_checkpoint_weights


@dataclass
class Resumed:
    """Where a resumed run continues from (the model, optimiser, schedule and scaler are loaded in place)."""

    step: int
    best_miou: float | None
    best_step: int | None
    last_val: dict[str, Any] | None
    elapsed: float
    notes: list[str] = field(default_factory=list)


def resume_record(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    scaler: torch.amp.GradScaler,
    *,
    step: int,
    steps_per_epoch: int,
    total_steps: int,
    world_size: int,
    best_miou: float | None,
    best_step: int | None,
    elapsed: float,
    rng: list[dict[str, Any]],
) -> dict[str, Any]:
    """The `resume` entry of last.pt: everything `apply_resume_record` needs to continue exactly."""
    return {
        "step": step,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "world_size": world_size,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "best_miou": best_miou,
        "best_step": best_step,
        "elapsed_s": elapsed,
        "rng": rng,
    }


def apply_resume_record(
    ck: Checkpoint,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    scaler: torch.amp.GradScaler,
    ctx: DistContext,
    steps_per_epoch: int,
) -> Resumed:
    """Load `ck`'s weights and resume record into this run's model, optimiser, schedule and scaler."""
    state = (ck.extra or {}).get("resume")
    if not state:
        raise RefineError(f"{ck.path} has no resume state", hint="resume from the run's last.pt, not best.pt")
    load_checkpoint_weights(model, ck.state_dict, str(ck.path))
    configured_lrs = list(scheduler.base_lrs)
    configured_hparams = [{k: g[k] for k in ("momentum", "weight_decay", "nesterov")} for g in optimizer.param_groups]
    optimizer.load_state_dict(run_files.optimizer_state_from_checkpoint(state["optimizer"]))
    scheduler_state = dict(state["scheduler"])
    scheduler_state["lr_lambdas"] = [None] * len(scheduler.lr_lambdas)  # keep this run's schedule
    scheduler.load_state_dict(scheduler_state)
    scheduler.base_lrs = configured_lrs
    for group, base_lr, hparams, factor in zip(
        optimizer.param_groups, configured_lrs, configured_hparams, scheduler.lr_lambdas, strict=True
    ):
        group.update(hparams, initial_lr=base_lr, lr=base_lr * factor(scheduler.last_epoch))
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    resumed = Resumed(
        step=int(state["step"]),
        best_miou=state.get("best_miou"),
        best_step=state.get("best_step"),
        last_val=ck.metrics or None,
        elapsed=float(state.get("elapsed_s", 0.0)),
    )
    rng = state.get("rng") or []
    if len(rng) == ctx.world_size:
        run_files.restore_rng(rng[ctx.rank])
    else:
        resumed.notes.append(f"resumed with {ctx.world_size} processes instead of {len(rng)}: new RNG streams")
    if int(state.get("steps_per_epoch", steps_per_epoch)) != steps_per_epoch:
        resumed.notes.append("batch or process count changed since the checkpoint: epochs are counted anew")
    return resumed
