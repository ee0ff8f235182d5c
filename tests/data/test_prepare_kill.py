"""A real `kill -9` in the middle of `refine prepare`, then a rerun: the dataset equals a clean run's.

The process is started with the real CLI, killed with SIGKILL once some samples are on disk (no
exception handler, finally block or atexit runs), and run again. Afterwards every label, image,
split list and meta.json must be byte-identical to an uninterrupted run, and no temporary
`.*.part` file may be left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.fake_voc2012_sbd_coco import build_voc, fixture_manifest
from tests.support.prepare_runner import run_prepare

REPO = Path(__file__).resolve().parents[2]
META = "meta.json"


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "refine_cli", "prepare", *args], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def _kill_after(process: subprocess.Popen, label: Path, timeout: float = 60.0) -> int:
    """SIGKILL `process` as soon as the finished `label` file exists; returns how many labels were on disk."""
    deadline = time.monotonic() + timeout
    while not label.exists():  # one stat per poll: listing the folder would slow the run it watches
        if process.poll() is not None:
            pytest.fail(f"prepare ended (code {process.returncode}) before it could be killed: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"prepare did not write {label} in time")
        time.sleep(0.002)
    process.kill()  # SIGKILL: nothing in the process gets to clean up
    process.wait()
    process.stderr.close()
    return sum(1 for _ in label.parent.glob("*.png"))


def _files(dataset: Path) -> dict[str, bytes]:
    """Every file of a unified dataset except prepare's own state, by relative path; meta.json without its time."""
    files = {
        str(path.relative_to(dataset)): path.read_bytes()
        for path in sorted(dataset.rglob("*"))
        if path.is_file() and path.name != ".prepare-state.json"
    }
    meta = json.loads(files[META])
    meta.pop("created")
    files[META] = json.dumps(meta, sort_keys=True).encode()
    return files


def _as_killed_writer_leaves(dataset: Path) -> None:
    """Temporary files as a writer killed mid-write leaves them (the real kill may or may not hit a write)."""
    for folder in ("images", "labels", "splits", "."):
        (dataset / folder / f".victim.png.{os.getpid()}-1.part").write_bytes(b"half a file")


def _assert_same_and_clean(resumed: Path, clean: Path) -> None:
    assert not [p for p in resumed.rglob(".*.part")], "temporary files left behind"
    got, want = _files(resumed), _files(clean)
    assert sorted(got) == sorted(want)
    differing = [name for name in want if got[name] != want[name]]
    assert not differing, differing[:5]


def test_prepare_voc_killed_mid_conversion_resumes_to_the_clean_result(tmp_path: Path) -> None:
    ids = [f"2009_{i:06d}" for i in range(300)]
    voc = build_voc(tmp_path / "archives", train=ids[:240], val=ids[240:], size=(24, 32))
    manifest = fixture_manifest(tmp_path, "voc", {"trainval": voc.archive}, None, {"train": 240, "val": 60})
    args = ["voc", "--archives", str(voc.archive.parent), "--manifest", str(manifest), "--workers", "1"]
    dataset = tmp_path / "killed" / "voc"

    done = _kill_after(_start([*args, "--root", str(tmp_path / "killed")]), dataset / "labels" / f"{ids[29]}.png")
    assert 30 <= done < len(ids) and not (dataset / META).exists()  # killed mid-run: not marked complete
    _as_killed_writer_leaves(dataset)

    resumed = run_prepare([*args, "--root", str(tmp_path / "killed")])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.report["reused"] == done and resumed.report["converted"] == len(ids) - done
    clean = run_prepare([*args, "--root", str(tmp_path / "clean")])
    assert clean.exit_code == 0, clean.output
    _assert_same_and_clean(dataset, tmp_path / "clean" / "voc")


def test_prepare_shapes_killed_midway_reruns_to_the_clean_result(tmp_path: Path) -> None:
    args = ["shapes", "--n", "300", "--size", "32"]
    dataset = tmp_path / "killed" / "shapes"

    done = _kill_after(_start([*args, "--root", str(tmp_path / "killed")]), dataset / "labels" / "shape_00039.png")
    assert 40 <= done < 300 and not (dataset / META).exists()
    _as_killed_writer_leaves(dataset)

    assert run_prepare([*args, "--root", str(tmp_path / "killed")]).exit_code == 0
    assert run_prepare([*args, "--root", str(tmp_path / "clean")]).exit_code == 0
    _assert_same_and_clean(dataset, tmp_path / "clean" / "shapes")
