"""Optimiser and learning-rate schedules of the RefineNet recipes.

LW-RefineNet trains the pretrained encoder gently and the fresh decoder fast: two SGD parameter
groups, the decoder's learning rate `decoder_lr_mult` (10) times the encoder's. Schedules are
per optimiser step and expressed as fractions of the run, so a recipe keeps its shape whether it is
run for `--epochs 300` or `--iters 2000`:

- multistep: the LW "stages" (lr x 1, 0.5, 0.2 over thirds of the run by default);
- poly: lr x (1 - step / total) ** power (DeepLab style);
- constant.

All of them accept a linear warm-up over the first `warmup_iters` steps.
"""

from __future__ import annotations

import bisect
from typing import Any

import torch
from torch import nn

from refine_cli.config import OptimConfig


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """Encoder group at `encoder_lr`, decoder group at `encoder_lr * decoder_lr_mult`.

    Models without an encoder/decoder split train as a single (decoder-rate) group. Every trainable
    parameter must land in exactly one group, or the split is a bug that would silently freeze weights.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not (hasattr(model, "encoder_parameters") and hasattr(model, "decoder_parameters")):
        return [{"params": trainable, "lr": cfg.encoder_lr * cfg.decoder_lr_mult, "name": "all"}]
    encoder = [p for p in model.encoder_parameters() if p.requires_grad]
    decoder = [p for p in model.decoder_parameters() if p.requires_grad]
    seen = {id(p) for p in encoder}
    if seen & {id(p) for p in decoder} or len(seen) + len(decoder) != len(trainable):
        raise ValueError("encoder_parameters() and decoder_parameters() must split the trainable parameters")
    return [
        {"params": encoder, "lr": cfg.encoder_lr, "name": "encoder"},
        {"params": decoder, "lr": cfg.encoder_lr * cfg.decoder_lr_mult, "name": "decoder"},
    ]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.SGD:
    """SGD with momentum and weight decay over the encoder/decoder groups."""
    return torch.optim.SGD(
        param_groups(model, cfg),
        lr=cfg.encoder_lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )


class LrSchedule:
    """Learning-rate factor for a step; a plain object so LambdaLR can save and restore it."""

    def __init__(
        self,
        kind: str,
        total_steps: int,
        milestones: list[float] | None = None,
        factors: list[float] | None = None,
        power: float = 0.9,
        warmup_steps: int = 0,
    ) -> None:
        self.kind = kind
        self.total_steps = max(1, int(total_steps))
        self.milestone_steps = [round(m * self.total_steps) for m in (milestones or [])]
        self.factors = [float(f) for f in (factors or [1.0])]
        self.power = float(power)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: int) -> float:
        if self.kind == "multistep":
            factor = self.factors[bisect.bisect_right(self.milestone_steps, step)]
        elif self.kind == "poly":
            factor = max(0.0, 1.0 - step / self.total_steps) ** self.power
        elif self.kind == "constant":
            factor = 1.0
        else:
            raise ValueError(f"unknown schedule {self.kind!r}")
        if step < self.warmup_steps:
            factor *= (step + 1) / self.warmup_steps
        return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR (call `.step()` after every optimiser step)."""
    schedule = LrSchedule(
        cfg.schedule,
        total_steps,
        milestones=cfg.milestones,
        factors=cfg.lr_factors,
        power=cfg.poly_power,
        warmup_steps=cfg.warmup_iters,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule)
