"""Which torch device a command runs on: one rule for train, eval, predict, export and bench.

A neutral home below every engine package, so inference and benchmarking need not reach into training's
distributed plumbing for it.
"""

from __future__ import annotations

import re

import torch

from refine_cli.errors import RefineError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> this process's GPU when CUDA works, else the CPU; 'cuda' without CUDA is an error, never a
    silent fallback. `local_rank` picks the GPU of a torchrun process when the name has no index."""
    text = name.strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if not re.fullmatch(r"cuda(:\d+)?", text):
        raise RefineError(f"unknown device {name!r}", hint="use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise RefineError(
            f"--device {text} was asked for but CUDA is not available "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'})",
            hint="use --device cpu or --device auto",
        )
    device = torch.device(text)
    index = local_rank if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise RefineError(f"there is no cuda:{index}", hint=f"this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device("cuda", index)
