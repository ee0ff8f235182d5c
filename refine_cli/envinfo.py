"""The environment a number was measured in: without it a benchmark or an mIoU cannot be compared."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from refine_cli import __version__

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _run(command: list[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def git_commit() -> dict[str, Any] | None:
    """Commit of the refine checkout this code runs from (None for an installed wheel)."""
    if not (_REPO_ROOT / ".git").exists():
        return None
    commit = _run(["git", "rev-parse", "HEAD"], cwd=_REPO_ROOT)
    if commit is None:
        return None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPO_ROOT)
    return {"commit": commit, "dirty": bool(status)}


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo, falling back to platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_driver() -> str | None:
    output = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return output.splitlines()[0].strip() if output else None


def cuda_info(device_index: int = 0) -> dict[str, Any]:
    """GPU name, capability, memory, driver, CUDA and cuDNN versions of one CUDA device."""
    import torch

    props = torch.cuda.get_device_properties(device_index)
    return {
        "gpu": props.name,
        "capability": f"{props.major}.{props.minor}",
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "multiprocessors": props.multi_processor_count,
        "driver": _nvidia_driver(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def environment(device: str = "cpu") -> dict[str, Any]:
    """Versions, hardware and threads for `device` ('cpu' or 'cuda[:N]')."""
    import torch
    import torchvision

    info: dict[str, Any] = {
        "refine": __version__,
        "git": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if device.startswith("cuda"):
        index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
        info.update(cuda_info(index))
    return info
