"""`refine prepare` limits: a full disk (refused up front, or one line when it fills up); download/archive options."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.acquire.limits import StallRules, max_expansion
from tests.support.fake_voc2012_sbd_coco import VOC_TRAIN, VOC_VAL, build_voc, fixture_manifest
from tests.support.prepare_runner import run_prepare


def _voc_args(tmp_path: Path) -> tuple[list[str], Path]:
    voc = build_voc(tmp_path / "archives")
    manifest = fixture_manifest(tmp_path, "voc", {"trainval": voc.archive})
    root = tmp_path / "data"
    args = ["voc", "--root", str(root), "--archives", str(tmp_path / "archives"), "--manifest", str(manifest)]
    return [*args, "--workers", "1"], root


def test_conversion_that_does_not_fit_is_refused_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, root = _voc_args(tmp_path)
    real = shutil.disk_usage
    monkeypatch.setattr(
        shutil, "disk_usage", lambda path: real(path)._replace(free=1000) if Path(path) == root / "voc" else real(path)
    )
    result = run_prepare(args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    samples = len(VOC_TRAIN) + len(VOC_VAL)
    assert len(lines) == 1 and lines[0].startswith(
        f"error: not enough free space in {root / 'voc'} to convert {samples} voc samples: needs "
    ), result.output
    assert lines[0].split("needs ")[1].split(",")[0].endswith("KiB") and "1000 B free" in lines[0]
    assert not list((root / "voc" / "labels").iterdir())


def test_disk_filling_up_during_conversion_is_one_line_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, root = _voc_args(tmp_path)
    dataset = str(root / "voc" / "images")
    real_open, real_write = os.open, os.write
    full: set[int] = set()

    def tracking_open(path: str, flags: int, mode: int = 0o777, **kw: object) -> int:
        fd = real_open(path, flags, mode, **kw)
        if str(path).startswith(dataset):
            full.add(fd)
        return fd

    def write(fd: int, data: bytes) -> int:
        if fd in full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "open", tracking_open)
    monkeypatch.setattr(os, "write", write)
    result = run_prepare(args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: no space left in {dataset} to write "), result.output
    assert "needs " in lines[0] and " free)" in lines[0]
    assert not list(Path(dataset).glob(".*.part")) and not (root / "voc" / "meta.json").exists()


def test_prepare_limit_options_reach_the_download_and_extraction_code(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REFINE_STALL_TIMEOUT", "REFINE_MIN_RATE", "REFINE_MAX_EXPANSION"):
        monkeypatch.delenv(name, raising=False)  # restored after the test: the options set them
    args = ["prepare", "--stall-timeout", "7", "--min-rate", "0.5", "--max-expansion", "1000", "--list"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert StallRules.from_env() == StallRules(stall_seconds=7.0, min_rate=500.0) and max_expansion() == 1000
    bad = CliRunner().invoke(app, ["prepare", "--max-expansion", "-1", "--list"])
    assert bad.exit_code == 2 and "--max-expansion" in bad.output
