"""The malloc thresholds take effect (page faults per pass drop) and REFINE_MALLOC_TUNING=0 switches them off."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Activations of 2-14 MiB per "forward pass", all freed at its end: glibc's dynamic thresholds
# trim the 56 MiB heap top (over twice the largest block) every pass, so each pass faults its
# pages in again.
PROBE = """
import ctypes, json, resource
from refine_cli.engine.bench.cpu_tuning import tune_allocator
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE: count 4-KiB pages, not the odd huge page
tuned = tune_allocator()
def one_pass():
    blocks = []
    for mib in (2, 4, 6, 8, 10, 12, 14):
        block = libc.malloc(mib << 20)
        ctypes.memset(block, 1, mib << 20)  # touch every page, as writing an activation does
        blocks.append(block)
    for block in blocks:
        libc.free(block)
for _ in range(2):
    one_pass()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    one_pass()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4
print(json.dumps({"tuned": tuned, "faults": faults}))
"""


def _probe(switch: str | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REFINE_MALLOC_TUNING", None)
    if switch is not None:
        env["REFINE_MALLOC_TUNING"] = switch
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the tuning is glibc-only")
def test_tuning_stops_refaulting_freed_buffers() -> None:
    plain = _probe("0")
    tuned = _probe(None)
    assert plain["tuned"] is False and tuned["tuned"] is True
    assert plain["faults"] > 10_000  # all 14,336 4-KiB pages of the 56 MiB re-faulted every pass
    assert tuned["faults"] < plain["faults"] / 10


def test_switched_off_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from refine_cli.engine.bench import cpu_tuning

    monkeypatch.setitem(cpu_tuning._STATE, "tuned", None)
    monkeypatch.setenv("REFINE_MALLOC_TUNING", "0")
    assert cpu_tuning.tune_allocator() is False
    assert cpu_tuning.allocator_tuned() is False
