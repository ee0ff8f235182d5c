"""One training step: uint8 crops -> normalised input -> logits -> masked cross-entropy -> SGD step.

Shared by the single-process and the DDP path (the DDP test drives it directly), so the numbers a
multi-GPU run computes are exactly those of one process on the whole batch, up to gradient averaging.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from refine_cli.data.load.normalize import input_normalization
from refine_cli.engine.train import distributed as dist_utils
from refine_cli.engine.train.distributed import DistContext
from refine_cli.errors import RefineError
from refine_cli.models import upsample_logits


class NonFiniteLoss(RefineError):
    """The loss became NaN/inf: stop without writing the broken weights anywhere."""


class TrainStep:
    """One optimiser step on a uint8 batch; the same object runs single-process and under DDP."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        ctx: DistContext,
        amp: str = "off",
        grad_clip: float | None = None,
        ignore_index: int = 255,
        class_weights: list[float] | None = None,
    ) -> None:
        self.model, self.optimizer, self.scheduler, self.ctx = model, optimizer, scheduler, ctx
        self.class_weights = torch.tensor(class_weights, device=ctx.device) if class_weights else None
        self.device, self.grad_clip, self.ignore_index = ctx.device, grad_clip, ignore_index
        self.amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")
        mean, std = input_normalization(model)  # ImageNet's, or that of an --init checkpoint (e.g. converted)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1) * 255

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """NHWC uint8 -> normalised NCHW float on the device (channels-last memory, free for convs)."""
        images = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        return (images - self.mean) / self.std

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over non-ignored pixels of logits upsampled to the label size (0 if none).

        With class weights it is the weighted mean (divided by the summed weights of the pixels, as
        PyTorch's reduction='mean' does), so the loss scale, and the learning rate, stay comparable.
        """
        target = labels.to(self.device, non_blocking=True).long()
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()
        )
        with autocast:
            logits = self.model(self.to_input(images))
        logits = upsample_logits(logits.float(), tuple(target.shape[-2:]))
        weight = self.class_weights
        total = F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index, reduction="sum")
        valid = target != self.ignore_index
        if weight is None:
            return total / valid.sum().clamp(min=1)
        return total / weight[target[valid]].sum().clamp(min=1e-12)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, problem: str = "") -> float:
        """Forward, check (label problems, non-finite loss) on every rank, backward, step; returns the mean loss."""
        loss = self.loss(images, labels)
        flags = torch.stack([loss.detach().float(), torch.tensor(float(bool(problem)), device=self.device)])
        flags = dist_utils.all_reduce_mean(flags, self.ctx)
        if flags[1].item() > 0:
            problems = [p for p in dist_utils.all_gather_object(problem, self.ctx) if p]
            raise RefineError(problems[0], hint="fix the dataset (refine prepare --check) or re-convert it")
        mean_loss = float(flags[0].item())
        if not math.isfinite(mean_loss):
            raise NonFiniteLoss(f"training loss became {mean_loss}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        return mean_loss
