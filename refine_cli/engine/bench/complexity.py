"""Parameter and multiply-accumulate (MAC) counts, the units the RefineNet papers report.

The LW-RefineNet paper's "FLOPs" are MACs of the convolutions at 512x512 (see docs/evaluation.md 4.3), so
we count exactly that: forward hooks on Conv2d / ConvTranspose2d / Linear, one fused multiply-add = 1
MAC, biases, BN, pooling and interpolation not counted. FLOPs = 2 x MACs. Counting runs on the meta
device where possible, so even RefineNet-152 at 2048x1024 is counted in well under a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

MAC_UNIT_NOTE = "GMACs = 10^9 multiply-accumulates (conv/linear, biases not counted); FLOPs = 2 x MACs"


@dataclass(frozen=True)
class Complexity:
    """Size and cost of a model for one input size (batch 1)."""

    params: int
    macs: int
    height: int
    width: int

    @property
    def gmacs(self) -> float:
        """MACs in units of 10^9."""
        return self.macs / 1e9


def count_params(model: nn.Module) -> int:
    """Number of learnable parameters (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


def _conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    kh, kw = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * kh * kw


def _conv_transpose_macs(module: nn.ConvTranspose2d, inputs: torch.Tensor) -> int:
    kh, kw = module.kernel_size
    return inputs.numel() * (module.out_channels // module.groups) * kh * kw


def _linear_macs(module: nn.Linear, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def count_macs(model: nn.Module, height: int, width: int, in_channels: int = 3) -> int:
    """MACs of one forward pass on a 1 x C x H x W input, counted on the model's own device.

    Hooks see every call, so modules used twice (shared convs) are counted twice, as they should be.
    """
    total = 0
    handles = []

    def hook_for(fn: Callable[..., int], use_input: bool) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            nonlocal total
            total += fn(module, args[0] if use_input else output)

        return hook

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(hook_for(_conv_macs, use_input=False)))
        elif isinstance(module, nn.ConvTranspose2d):
            handles.append(module.register_forward_hook(hook_for(_conv_transpose_macs, use_input=True)))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(hook_for(_linear_macs, use_input=False)))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, height, width, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total


def _drop_batchnorm(model: nn.Module) -> None:
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, name, nn.Identity())


def measure(build: Callable[[], nn.Module], height: int = 512, width: int = 512) -> Complexity:
    """Build a model on the meta device (no memory, no init cost) and count params and MACs.

    Falls back to a real CPU build if the model cannot be built or run on the meta device.
    """
    try:
        with torch.device("meta"):
            model = build()
        params = count_params(model)
        _drop_batchnorm(model)  # shape-preserving and MAC-free; on meta it is the slowest op by far
        macs = count_macs(model, height, width)
    except (NotImplementedError, RuntimeError, TypeError, ValueError):
        model = build()
        params = count_params(model)
        macs = count_macs(model, height, width)
    return Complexity(params=params, macs=macs, height=height, width=width)
