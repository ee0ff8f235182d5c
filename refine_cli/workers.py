"""Worker processes that never outlive the command that started them.

A `ProcessPoolExecutor` worker whose parent is killed with SIGKILL (no chance to shut the pool down)
would otherwise wait on its task queue forever. Every pool in refine starts its workers with
`die_with_parent` as the initializer: on Linux the kernel sends the worker SIGKILL when the parent
dies (prctl PR_SET_PDEATHSIG); elsewhere a daemon thread polls the parent's pid once a second.
The kernel signal fires when the parent *thread* that forked the worker ends, so a pool must be
created by a thread that outlives it (refine's pools are all made by the main thread).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> None:
    """Pool initializer: end this worker as soon as its parent process is gone."""
    parent = os.getppid()
    if sys.platform.startswith("linux") and _set_parent_death_signal():
        if os.getppid() != parent or parent == 1:  # the parent died before prctl took effect
            os._exit(1)
        return
    threading.Thread(target=_watch_parent, args=(parent,), name="refine-parent-watch", daemon=True).start()


def _set_parent_death_signal() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def pool_size(requested: int | None, work_items: int, per_cpu: int = 1) -> int:
    """How many worker processes to start: what was asked (default one per CPU), never more than
    `per_cpu` per CPU nor more than there are work items, at least one.

    `--workers 10000` for four samples would otherwise fork thousands of processes that wait their
    turn for the same cores and exhaust the machine's memory and process table.
    """
    cpus = os.cpu_count() or 1
    wanted = cpus if requested is None or requested <= 0 else requested
    return max(1, min(wanted, cpus * per_cpu, work_items))
