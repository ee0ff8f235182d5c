"""Atomic writes: complete files only, umask permissions, nothing left behind on failure."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import stat
from pathlib import Path

import pytest

from refine_cli.fileio import (
    DiskFullError,
    atomic_path,
    ensure_free_space,
    human_bytes,
    write_bytes_atomic,
    write_json_atomic,
)


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


def _no_space(*args: object) -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


def _free(monkeypatch: pytest.MonkeyPatch, folder: Path, free: int) -> None:
    usage = shutil.disk_usage(folder)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=free))


def test_full_disk_in_the_atomic_writer_is_one_line_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / "labels" / "a.png"
    final.parent.mkdir()
    final.write_bytes(b"old")
    monkeypatch.setattr(os, "write", _no_space)
    _free(monkeypatch, tmp_path, 0)
    with pytest.raises(DiskFullError) as info:
        write_bytes_atomic(final, b"x" * 3000)
    assert info.value.one_line() == (
        f"no space left in {final.parent} to write a.png (needs 2.9 KiB, 0 B free) "
        "(free some space there, or choose another output folder)"
    )
    assert info.value.exit_code == 2
    assert final.read_bytes() == b"old" and [p.name for p in final.parent.iterdir()] == ["a.png"]


def test_full_disk_in_a_checkpoint_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.save reports a full disk as a bare RuntimeError: a nearly empty disk tells it apart."""
    final = tmp_path / "ck.pt"
    with pytest.raises(DiskFullError, match=r"to write ck\.pt \(4 B written when it failed\) \(needs more space"):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    _free(monkeypatch, tmp_path, 4096)
    with pytest.raises(DiskFullError, match="no space left in"), atomic_path(final) as tmp:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_error_survives_a_process_pool() -> None:
    error = pickle.loads(pickle.dumps(DiskFullError("no space left in /x", hint="free some")))
    assert isinstance(error, DiskFullError) and error.one_line() == "no space left in /x (free some)"


def test_ensure_free_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _free(monkeypatch, tmp_path, 5 << 30)
    ensure_free_space(tmp_path / "not" / "yet", 5 << 30, "convert")  # the nearest existing folder is asked
    with pytest.raises(DiskFullError, match=r"in .*yet to convert: needs 5.0 GiB, 5.0 GiB free"):
        ensure_free_space(tmp_path / "not" / "yet", (5 << 30) + 1, "convert")
    assert [human_bytes(n) for n in (0, 1023, 1536, 3 << 20)] == ["0 B", "1023 B", "1.5 KiB", "3.0 MiB"]


def test_a_full_disk_anywhere_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """ENOSPC raised by a library (e.g. an event-file writer) reaches the user as the same one line."""
    import typer
    from typer.testing import CliRunner

    from refine_cli.cli.app import _RefineGroup

    probe = typer.Typer(cls=_RefineGroup, pretty_exceptions_enable=False)

    @probe.command()
    def write() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "events.out"))

    @probe.command()
    def other() -> None:
        pass

    result = CliRunner().invoke(probe, ["write"])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: no space left in {tmp_path} to write events.out (needs more space, ")
    assert len(result.output.strip().splitlines()) == 1
