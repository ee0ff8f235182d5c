"""Fixtures shared across test folders (keep this small; per-area helpers live in tests/support)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# `tests.support` must import whether pytest runs as `python -m pytest` (cwd on sys.path) or as `pytest`.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.http_server import LoopbackServer  # noqa: E402

os.environ.setdefault("REFINE_OPENVINO_CACHE", "0")  # tests never write the user's compiled-model cache


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    """A started loopback HTTP server; put bytes in `.files[path]` and faults in `.faults[path]`."""
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """torch on one thread for the test: on a shared 2-core machine, two threads fight (10-20x slower)."""
    import torch  # not at module level: most test files never need torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def restore_inductor_freezing() -> Iterator[None]:
    """`compile_for_inference` turns on inductor's process-wide freezing; later tests get the old value back.

    Not monkeypatch: its undo deletes an attribute it did not find in the module's `__dict__`, and
    torch's config module keeps its options elsewhere, so the option would vanish for every later test.
    """
    import torch._inductor.config as inductor_config

    freezing = inductor_config.freezing
    yield
    inductor_config.freezing = freezing
