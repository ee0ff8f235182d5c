"""Atomic writes: complete files only, umask permissions, nothing left behind on failure."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from refine_cli.fileio import atomic_path, write_bytes_atomic, write_json_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_with_umask_mode_and_no_leftovers(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "new" / "a.bin", b"abc")
        write_json_atomic(tmp_path / "b.json", {"x": 1})
        with atomic_path(tmp_path / "c.txt") as tmp:
            tmp.write_text("c")
    finally:
        os.umask(umask)
    assert (tmp_path / "new" / "a.bin").read_bytes() == b"abc"
    assert _mode(tmp_path / "new" / "a.bin") == 0o644 and _mode(tmp_path / "b.json") == 0o644
    assert _mode(tmp_path / "c.txt") == 0o644
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []


def test_failed_write_keeps_old_file_and_leaves_no_part(tmp_path: Path) -> None:
    final = tmp_path / "ck.pt"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert final.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [final]
