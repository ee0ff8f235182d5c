"""Second processes for race tests: start `python ...` with this checkout importable, wait until it holds a lock."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from refine_cli.locks import read_holder

REPO = str(Path(__file__).resolve().parent.parent.parent)


def spawn(args: list[str], **env: str) -> subprocess.Popen[str]:
    """`python ARGS` with the repository on PYTHONPATH; output collected for failure messages."""
    environment = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1", **env}  # 1 thread: shared CPUs
    return subprocess.Popen(
        [sys.executable, *args], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for_holder(target: Path, process: subprocess.Popen[str], timeout: float = 60) -> dict[str, object]:
    """Until `process` holds the lock of `target` (the lock's sidecar names its pid)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = read_holder(target)
        if record and record.get("pid") == process.pid:
            return record
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.02)
    raise AssertionError(f"{process.args} never took the lock of {target}")


@contextlib.contextmanager
def reaping() -> Iterator[list[subprocess.Popen[str]]]:
    """A list to append started processes to; on exit, kill (by pid) those still running, stopped ones too."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
        process.communicate()
