"""Keep glibc from handing activation buffers back to the kernel after every forward pass.

glibc serves large blocks with mmap and trims the heap top as soon as a few tens of MiB are free, so
every forward pass of a segmentation model faults its activations in again page by page (40,000 to
70,000 minor page faults per LW-50 or LW-MobileNetV2 forward at 512x512). Raising the mmap
threshold to its maximum (32 MiB) and the trim threshold to 512 MiB keeps the freed blocks for the
next pass: no page faults at all at batch 1, for a little more resident memory (docs/benchmarks.md,
"CPU levers").

Linux with glibc only; elsewhere, or with REFINE_MALLOC_TUNING=0, nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

ENV_SWITCH = "REFINE_MALLOC_TUNING"
_M_TRIM_THRESHOLD = -1  # <malloc.h> parameter numbers
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc refuses more than HEAP_MAX_SIZE / 2 (32 MiB on 64-bit)
TRIM_THRESHOLD = 512 * 1024 * 1024
_STATE: dict[str, bool | None] = {"tuned": None}


def tune_allocator() -> bool:
    """Apply the malloc thresholds once per process; True if they are in effect.

    Call it at the start of a command that runs models, before the first large tensor exists.
    Forked DataLoader workers inherit the setting.
    """
    if _STATE["tuned"] is None:
        _STATE["tuned"] = _apply()
    return bool(_STATE["tuned"])


def allocator_tuned() -> bool:
    """Whether `tune_allocator` changed the thresholds in this process (for reports)."""
    return bool(_STATE["tuned"])


def _apply() -> bool:
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the trim threshold only matters once the mmap one is raised
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
