"""The synthetic shapes dataset: deterministic bytes, valid unified format, sane class content."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from refine_cli.data.convert.shapes import SHAPES_CLASSES, generate_shapes, render_sample
from refine_cli.data.format.unified import UnifiedDataset


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "meta.json"
    }


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = generate_shapes(tmp_path / "a", n=6, size=64, seed=3)
    b = generate_shapes(tmp_path / "b", n=6, size=64, seed=3)
    c = generate_shapes(tmp_path / "c", n=6, size=64, seed=4)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    # a sample does not depend on how many are generated
    assert np.array_equal(render_sample(3, 2, 64)[1], render_sample(3, 2, 64)[1])


def test_unified_layout_splits_and_labels(tmp_path: Path) -> None:
    path = generate_shapes(tmp_path, n=10, size=64, seed=0)
    dataset = UnifiedDataset(path)
    assert dataset.meta.classes == SHAPES_CLASSES and dataset.meta.num_classes == 6
    train, val = dataset.split_ids("train"), dataset.split_ids("val")
    assert len(train) == 8 and len(val) == 2 and not set(train) & set(val)
    seen: set[int] = set()
    for sample_id in train + val:
        image, label = dataset.read_image(sample_id), dataset.read_label(sample_id)
        assert image.shape == (64, 64, 3) and label.shape == (64, 64)
        values = set(np.unique(label).tolist())
        assert values <= set(range(6)) | {255}
        assert 255 in values and 0 in values  # ignore band around shapes, background present
        seen |= values
    assert seen >= set(range(6))  # every class occurs in 10 samples


def test_regenerating_smaller_removes_stale_samples(tmp_path: Path) -> None:
    generate_shapes(tmp_path, n=6, size=64)
    path = generate_shapes(tmp_path, n=3, size=64)
    assert len(list((path / "images").iterdir())) == 3 and len(list((path / "labels").iterdir())) == 3


def test_shape_pixels_carry_class_colour() -> None:
    """Learnability check: class-mean hues differ, so a small model can separate the classes."""
    import cv2

    hues: dict[int, list[float]] = {c: [] for c in range(1, 6)}
    for index in range(30):
        image, label = render_sample(0, index, 96)
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        for cls in hues:
            mask = label == cls
            if mask.sum() > 20:
                hues[cls].append(float(np.median(hsv[..., 0][mask])))
    medians = sorted(np.median(v) for v in hues.values())
    assert min(np.diff(medians)) > 10


def test_workers_give_the_same_bytes(tmp_path: Path) -> None:
    one = generate_shapes(tmp_path / "one", n=40, size=32, seed=1)
    two = generate_shapes(tmp_path / "two", n=40, size=32, seed=1, workers=2)
    assert _digest(one) == _digest(two)


def _children(parent: int) -> list[int]:
    """Pids whose parent is `parent` (from /proc/<pid>/stat; field 4 is the parent pid)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie has exited and only waits to be reaped)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux-only")
def test_workers_exit_when_prepare_is_killed(tmp_path: Path) -> None:
    """kill -9 of `refine prepare shapes --workers 2` mid-run: its worker processes must not live on."""
    repo = str(Path(__file__).resolve().parents[2])
    command = [sys.executable, "-m", "refine_cli", "prepare", "shapes", "--root", str(tmp_path)]
    command += ["--n", "4000", "--size", "128", "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": repo}
    parent = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    labels = tmp_path / "shapes" / "labels"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and parent.poll() is None:
        workers = _children(parent.pid)
        if len(workers) >= 2 and labels.is_dir() and any(labels.iterdir()):
            break
        time.sleep(0.05)
    assert parent.poll() is None and len(workers) >= 2, "prepare was not mid-run with two workers"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:  # do not leak them when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"worker processes {survivors} outlived their killed parent"
