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

# Activations of 4-28 MiB per "forward pass", all freed at its end: glibc's dynamic thresholds
# trim the 112 MiB heap top (over twice the largest block) every pass, so each pass faults its
# pages in again.
PROBE = """
import ctypes, json, resource, sys, torch
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE: count 4-KiB pages, not the odd huge page
from refine_cli.engine.cpu_tuning import tune_allocator
tuned = tune_allocator()
def one_pass():
    buffers = [torch.ones(mib * 256 * 1024) for mib in (4, 8, 12, 16, 20, 24, 28)]
    return float(sum(b[-1] for b in buffers))
for _ in range(3):
    one_pass()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    one_pass()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(json.dumps({"tuned": tuned, "faults": faults}))
"""


def _probe(switch: str | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
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
    assert plain["faults"] > 2000  # 4,400-18,000 4-KiB pages re-faulted per pass without the tuning
    assert tuned["faults"] < plain["faults"] / 10


def test_switched_off_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from refine_cli.engine import cpu_tuning

    monkeypatch.setitem(cpu_tuning._STATE, "tuned", None)
    monkeypatch.setenv("REFINE_MALLOC_TUNING", "0")
    assert cpu_tuning.tune_allocator() is False
    assert cpu_tuning.allocator_tuned() is False
