"""How many CPU threads a command's PyTorch (and ONNX Runtime) uses: one rule for train, eval, predict and bench.

PyTorch's default is one intra-op thread per physical core in every process, however many processes
share those cores. On a busy machine that oversubscribes them, and OpenMP threads that wait at each
operator's barrier for a descheduled partner make a step 5-10x slower, not a little (measured in
docs/benchmarks.md, "CPU threads"). The rule: the CPUs this process may use (its affinity mask and
cgroup CPU quota), divided among the processes of the run (torchrun's processes on this machine),
less the busy worker processes the command starts itself (data-loader workers, CRF workers), at
least 1. `--threads N` sets it; so does OMP_NUM_THREADS, the standard spelling of the same choice.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
BUSY_LOAD_PER_CPU = 0.75  # a 1-minute load average above this per usable CPU: other jobs hold the cores


def usable_cpus() -> int:
    """CPUs this process may run on: the affinity mask (taskset, Slurm, Docker --cpuset-cpus), capped
    by a cgroup v2 CPU quota (Docker --cpus, Kubernetes limits), which os.cpu_count() does not see."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = _CGROUP_CPU_MAX.read_text(encoding="ascii").split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def local_processes() -> int:
    """Processes of this run on this machine: torchrun's LOCAL_WORLD_SIZE, else 1."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def default_threads(workers: int = 0, processes: int | None = None, cpus: int | None = None) -> int:
    """The rule: usable CPUs / processes, less this process's busy `workers`, at least 1."""
    cpus = usable_cpus() if cpus is None else cpus
    processes = local_processes() if processes is None else processes
    return max(1, cpus // max(1, processes) - max(0, workers))


def _omp_threads() -> int | None:
    """OMP_NUM_THREADS when set to a positive integer (the user's choice, honoured like --threads)."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def choose_threads(requested: int | None = None, workers: int = 0) -> tuple[int, str]:
    """(threads, why): --threads, else OMP_NUM_THREADS, else the rule; `why` is for the plan line."""
    if requested is not None:
        return requested, "--threads"
    omp = _omp_threads()
    if omp is not None:
        return omp, "OMP_NUM_THREADS"
    cpus, processes = usable_cpus(), local_processes()
    parts = [f"{cpus} CPU(s)"] + ([f"/ {processes} processes"] if processes > 1 else [])
    parts += [f"- {workers} worker(s)"] if workers else []
    return default_threads(workers, processes, cpus), " ".join(parts)


def apply_threads(requested: int | None = None, workers: int = 0) -> tuple[int, str]:
    """Set torch's intra-op threads by `choose_threads`; returns (threads, why)."""
    import torch

    threads, why = choose_threads(requested, workers)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads, why


def busy_note(threads: int, why: str) -> str | None:
    """A line when the machine is already busy and the default gave a process more than one thread.

    The default itself never looks at the load: the thread count can change floating-point results in
    the last bits, and the same command should give the same numbers on the same machine.
    """
    if threads <= 1 or why in ("--threads", "OMP_NUM_THREADS") or not hasattr(os, "getloadavg"):
        return None
    load, cpus = os.getloadavg()[0], usable_cpus()
    if load < cpus * BUSY_LOAD_PER_CPU:
        return None
    return (
        f"the machine is busy (1-minute load {load:.1f} on {cpus} CPUs): {threads} threads per process wait on "
        "each other there, often several times slower; --threads 1 avoids it"
    )
