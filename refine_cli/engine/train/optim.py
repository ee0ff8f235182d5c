"""The optimiser of the RefineNet recipes, and the LambdaLR that runs a schedule of `schedules.py`.

LW-RefineNet trains the pretrained encoder gently and the fresh decoder fast: two SGD parameter
groups, the decoder's learning rate `decoder_lr_mult` (10) times the encoder's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from refine_cli.engine.train.config import OptimConfig
from refine_cli.engine.train.schedules import LrSchedule


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


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR over the schedule `cfg` names (call `.step()` after every optimiser step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=LrSchedule.from_config(cfg, total_steps))
