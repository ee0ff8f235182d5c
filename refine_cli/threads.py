"""How many CPU threads a command's PyTorch (and ONNX Runtime) uses: one rule for train, eval, predict and bench.

PyTorch's default is one intra-op thread per physical core in every process, however many processes
share those cores. On a busy machine that oversubscribes them, and OpenMP threads that wait at each
operator's barrier for a descheduled partner make a step 5-10x slower, not a little (measured in
docs/benchmarks.md, "CPU threads"). The rule: the physical cores this process may use (its affinity
mask and cgroup CPU quota), divided among the processes of the run (torchrun's processes on this machine),
less the busy worker processes the command starts itself (data-loader workers, CRF workers), at
least 1. `--threads N` sets it; so does OMP_NUM_THREADS, the standard spelling of the same choice.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
_SYSFS_CPU = Path("/sys/devices/system/cpu")
BUSY_LOAD_PER_CPU = 0.75  # a 1-minute load average above this per usable CPU: other jobs hold the cores
MAX_THREADS_PER_CPU = 4  # more only makes threads wait for each other; far more exhausts memory


def usable_cpus(sysfs: Path = _SYSFS_CPU) -> int:
    """Physical cores this process may run on: the affinity mask (taskset, Slurm, Docker --cpuset-cpus) with
    hyper-thread siblings counted once (PyTorch's own default is one thread per physical core), capped by
    a cgroup v2 CPU quota (Docker --cpus, Kubernetes limits), which os.cpu_count() does not see."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        allowed = list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in allowed:
        try:
            cores.add((sysfs / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip())
        except OSError:
            cores.add(str(cpu))
    count = len(cores)
    try:
        quota, period = _CGROUP_CPU_MAX.read_text(encoding="ascii").split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


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
        return _bounded(requested, "--threads"), "--threads"
    omp = _omp_threads()
    if omp is not None:
        return _bounded(omp, "OMP_NUM_THREADS"), "OMP_NUM_THREADS"
    cpus, processes = usable_cpus(), local_processes()
    parts = [f"{cpus} CPU(s)"] + ([f"/ {processes} processes"] if processes > 1 else [])
    parts += [f"- {workers} worker(s)"] if workers else []
    return default_threads(workers, processes, cpus), " ".join(parts)


def _bounded(threads: int, source: str) -> int:
    """A thread count the user gave, refused above MAX_THREADS_PER_CPU per usable CPU (100,000 crashed torch)."""
    limit = usable_cpus() * MAX_THREADS_PER_CPU
    if threads > limit:
        from refine_cli.errors import RefineError

        raise RefineError(
            f"{source} {threads} is far more threads than the {usable_cpus()} CPU core(s) this process may use",
            hint=f"use at most {limit}; one per core is usually fastest, and leaving it out gives refine's choice",
        )
    return threads


def apply_threads(requested: int | None = None, workers: int = 0) -> tuple[int, str]:
    """Set torch's intra-op threads by `choose_threads`; returns (threads, why)."""
    import torch

    threads, why = choose_threads(requested, workers)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads, why


def wait_quietly_when_busy() -> bool:
    """On a busy machine, make OpenMP threads sleep at a barrier instead of spinning (OMP_WAIT_POLICY=PASSIVE).

    A spinning thread holds its core while its partner waits to be scheduled: with two threads on a
    loaded 2-core machine training ran 0.65 img/s spinning and 8.0 sleeping (docs/benchmarks.md). The
    policy changes only scheduling, never a result, so it may follow the load (the thread count may not).
    Read once, when torch loads OpenMP: call it before torch is imported. An OMP_WAIT_POLICY the user
    set is kept. Returns True when it set the policy.
    """
    if "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules or not hasattr(os, "getloadavg"):
        return False
    if os.getloadavg()[0] < usable_cpus() * BUSY_LOAD_PER_CPU:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def describe_waiting() -> str:
    """'' or ', OpenMP waits passive' for the plan line."""
    return ", OpenMP waits passive" if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" else ""
