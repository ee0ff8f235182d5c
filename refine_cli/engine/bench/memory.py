"""Peak memory of a benchmark: the CUDA allocator's counters, or on Linux the process's peak RSS.

On the CPU there is no allocator counter, so we reset the kernel's peak-RSS mark (VmHWM, via
/proc/self/clear_refs) and report how far it rose above the resident size before the model was built.
Where that is not possible we report None with a note rather than a guessed number.
"""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path

import torch

MIB = 2**20


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def release_free_memory() -> None:
    """Ask glibc to return freed heap pages to the OS, so the next RSS baseline is not inflated."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def current_rss_bytes() -> int | None:
    """Resident set size now (Linux), or None."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int | None:
    """Peak resident set size since the last reset (Linux), or None."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024


class PeakMemory:
    """Measure peak memory of one model's benchmark on `device` (start() before building the model)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.baseline: int | None = None
        self.note: str | None = None

    def start(self) -> None:
        """Remember the memory in use before the model exists."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            self.baseline = torch.cuda.memory_allocated(self.device)
        else:
            release_free_memory()
            self.baseline = current_rss_bytes()

    def reset_peak(self) -> None:
        """Start the peak window (after the model is built and prepared, just before warm-up)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif not reset_peak_rss():
            self.note = "peak memory unavailable: this kernel does not allow resetting the peak RSS"

    def result_mib(self) -> dict[str, float | None]:
        """Peak memory in MiB: CUDA max_memory_allocated/reserved, or CPU peak RSS growth."""
        if self.device.type == "cuda":
            return {
                "peak_memory_mb": round(torch.cuda.max_memory_allocated(self.device) / MIB, 1),
                "peak_reserved_mb": round(torch.cuda.max_memory_reserved(self.device) / MIB, 1),
            }
        peak = peak_rss_bytes()
        if self.note or peak is None or self.baseline is None:
            self.note = self.note or "peak memory unavailable: /proc/self/status is not readable"
            return {"peak_memory_mb": None}
        self.note = (
            "CPU peak memory = rise of the process peak RSS over the RSS before the model was built "
            "(weights + activations; the allocator may reuse memory freed by earlier models)"
        )
        return {"peak_memory_mb": round(max(peak - self.baseline, 0) / MIB, 1)}
