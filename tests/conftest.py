"""Fixtures shared across test folders (keep this small; per-area helpers live in tests/support)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Under pytest-xdist (`make test`: two workers on two cores) torch gets one thread per worker: two
# workers with a thread per core each would fight over the cores (10-20x slower steps). Set before
# anything imports torch; the processes tests start inherit it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# `tests.support` must import whether pytest runs as `python -m pytest` (cwd on sys.path) or as `pytest`.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.digests import tree_digest  # noqa: E402
from tests.support.http_server import LoopbackServer  # noqa: E402
from tests.support.workspaces import ShapesWorkspace  # noqa: E402

SHARED_SHAPES_IMAGES = 10  # 8 train / 2 val: two val images so per-image checks compare something


@pytest.fixture(scope="session")
def shapes_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShapesWorkspace]:
    """`refine prepare shapes` (10 images of 64 px) and a tiny checkpoint for it, made once for the session.

    Shared by every test that only reads them. Writing into the folder would leak from one test into
    the next, so the session ends with an error if any file under it changed.
    """
    from tests.support.checkpoints import shapes_with_checkpoint

    root = tmp_path_factory.mktemp("shared_shapes")
    data, checkpoint = shapes_with_checkpoint(root, SHARED_SHAPES_IMAGES)
    before = tree_digest(root)
    yield ShapesWorkspace(data, checkpoint)
    assert tree_digest(root) == before, f"a test wrote into the shared {root}: copy it to tmp_path first"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`make_tiny_dataset` with 3 classes, 8 train / 2 val images of 40x48, made once for the session.

    For training tests that only read it; the session ends with an error if any file under it changed.
    """
    from tests.support.tiny_seg import make_tiny_dataset

    root = tmp_path_factory.mktemp("shared_tiny")
    data = make_tiny_dataset(root, train=8, val=2, size=(40, 48))
    before = tree_digest(root)
    yield data
    assert tree_digest(root) == before, f"a test wrote into the shared {root}: copy it to tmp_path first"


os.environ.setdefault("REFINE_OPENVINO_CACHE", "0")  # tests never write the user's compiled-model cache


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    """A started loopback HTTP server; put bytes in `.files[path]` and faults in `.faults[path]`."""
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """torch on one thread for the test: on a shared 2-core machine, two threads fight (10-20x slower).

    OMP_NUM_THREADS too: the commands run in the test honour it as the user's choice (refine_cli.threads).
    """
    import torch  # not at module level: most test files never need torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
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
