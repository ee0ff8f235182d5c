"""Extraction: traversal attempts are refused, corrupt archives fail clearly, extraction is reused."""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
from filelock import FileLock

from refine_cli.data.acquire import extract as extract_module
from refine_cli.data.acquire.extract import extract_archive, is_extracted
from refine_cli.errors import RefineError
from refine_cli.fileio import DiskFullError
from refine_cli.locks import hold_lock


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def _leftovers(folder: Path) -> list[str]:
    """What an extraction left in `folder`, but the (empty, reusable) lock file."""
    return sorted(p.name for p in folder.iterdir() if p.suffix != ".lock")


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_tgz_extracts_and_is_reused(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tgz", [(_file("top/x.txt"), b"x"), (_file("top/sub/y.txt"), b"yy")], "w:gz")
    target = extract_archive(archive, tmp_path / "out")
    assert (target / "top" / "sub" / "y.txt").read_bytes() == b"yy"
    assert is_extracted(archive, target)
    (target / "top" / "x.txt").write_bytes(b"changed")  # a reuse must not re-extract
    extract_archive(archive, target)
    assert (target / "top" / "x.txt").read_bytes() == b"changed"
    # a different archive file (new mtime/size) replaces the stale extraction
    _tar(archive, [(_file("top/z.txt"), b"zzz")], "w:gz")
    os.utime(archive, ns=(1, 1))
    extract_archive(archive, target)
    assert (target / "top" / "z.txt").exists() and not (target / "top" / "x.txt").exists()


@pytest.mark.parametrize(
    "member",
    [
        (_file("../evil.txt"), b"evil"),
        (_file("ok/../../evil.txt"), b"evil"),
        (_file("/tmp/refine-evil-abs.txt"), b"evil"),
        (_link("ok/link", "../../outside"), None),
        (_link("link", "/etc/passwd"), None),
        (_link("hard", "../evil.txt", tarfile.LNKTYPE), None),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-escape", "symlink-absolute", "hardlink-escape"],
)
def test_tar_traversal_is_rejected(tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None]) -> None:
    work = tmp_path / "work"
    archive = _tar(tmp_path / "bad.tar", [(_file("fine.txt"), b"ok"), member])
    with pytest.raises(RefineError, match="refusing to extract") as info:
        extract_archive(archive, work / "out")
    assert member[0].name in info.value.message
    assert not (work / "out").exists()
    assert _leftovers(work) == []  # the temporary folder is gone too
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/refine-evil-abs.txt").exists()


def test_tar_inner_symlink_is_allowed(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "ok.tar", [(_file("d/real.txt"), b"r"), (_link("d/alias.txt", "real.txt"), None)])
    target = extract_archive(archive, tmp_path / "out")
    assert (target / "d" / "alias.txt").read_bytes() == b"r"


def test_tar_device_is_rejected(tmp_path: Path) -> None:
    device = _file("dev")
    device.type = tarfile.CHRTYPE
    with pytest.raises(RefineError, match="device"):
        extract_archive(_tar(tmp_path / "dev.tar", [(device, None)]), tmp_path / "out")


def test_zip_traversal_is_rejected(tmp_path: Path) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", "ok")
        zf.writestr("../evil.txt", "evil")
    with pytest.raises(RefineError, match=r"'\.\.' component"):
        extract_archive(archive, tmp_path / "work" / "out")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "work" / "out").exists()


def test_zip_symlink_escape_is_rejected(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "../../outside")
    with pytest.raises(RefineError, match="symbolic link"):
        extract_archive(archive, tmp_path / "out")


def test_zip_extracts(tmp_path: Path) -> None:
    archive = tmp_path / "good.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/b.txt", "bee")
    assert (extract_archive(archive, tmp_path / "out") / "a" / "b.txt").read_text() == "bee"


@pytest.mark.parametrize("mode,suffix", [("w", "tar"), ("w:gz", "tgz")])
def test_truncated_archive_is_a_clear_error(tmp_path: Path, mode: str, suffix: str) -> None:
    payload = os.urandom(200_000)
    archive = _tar(tmp_path / f"full.{suffix}", [(_file("a.bin"), payload), (_file("b.bin"), payload)], mode)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(RefineError) as info:
        extract_archive(archive, tmp_path / "work" / "out")
    assert str(archive) in info.value.message and "download it again" in (info.value.hint or "")
    assert _leftovers(tmp_path / "work") == []


def test_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"<html>mirror error page</html>")
    with pytest.raises(RefineError, match="neither a tar nor a zip"):
        extract_archive(junk, tmp_path / "out")


def test_foreign_target_folder_is_not_deleted(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar", [(_file("x.txt"), b"x")])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep")
    with pytest.raises(RefineError, match="not extracted by refine"):
        extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out" / "precious.txt").exists()


def test_folder_left_by_a_killed_extraction_is_removed(tmp_path: Path) -> None:
    archive = tmp_path / "data.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("data/a.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"a"))
    stale = tmp_path / "out" / ".data.k1ll3d.part"  # what mkdtemp left when the process was killed
    (stale / "data").mkdir(parents=True)
    (stale / "data" / "half.bin").write_bytes(b"x" * 100)
    target = extract_archive(archive, tmp_path / "out" / "data")
    assert (target / "data" / "a.txt").read_bytes() == b"a"
    assert not stale.exists()


# ------------------------------------------------------------- bombs, full disks, long names, races

ZEROS = bytes(2 << 20)  # 2 MiB of zeros: deflate makes ~2 KiB of it, a ratio of ~1000


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def default_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFINE_MAX_EXPANSION", raising=False)  # and restore whatever a CLI test set


def test_zip_bomb_is_refused_before_extracting(tmp_path: Path, default_limit: None, monkeypatch) -> None:
    archive = _zip(tmp_path / "bomb.zip", {"a.txt": b"a", "zeros.bin": ZEROS})
    with pytest.raises(RefineError) as info:
        extract_archive(archive, tmp_path / "work" / "out")
    text = info.value.one_line()
    assert "expand to 2.0 MiB, more than 100 x its size" in text and "--max-expansion" in text
    assert "REFINE_MAX_EXPANSION" in text
    assert _leftovers(tmp_path / "work") == []
    monkeypatch.setenv("REFINE_MAX_EXPANSION", "5000")  # the override the message names
    assert (extract_archive(archive, tmp_path / "work" / "out") / "zeros.bin").stat().st_size == len(ZEROS)


def test_tgz_bomb_is_refused_while_streaming(tmp_path: Path, default_limit: None) -> None:
    archive = _tar(tmp_path / "bomb.tgz", [(_file("a.txt"), b"a"), (_file("zeros.bin"), ZEROS)], "w:gz")
    with pytest.raises(RefineError, match=r"expand to 2\.0 MiB or more, more than 100 x") as info:
        extract_archive(archive, tmp_path / "work" / "out")
    assert "zip bomb" in info.value.message
    assert _leftovers(tmp_path / "work") == []  # the member before the bomb is gone with the temp folder


def test_archive_larger_than_the_free_space_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _zip(tmp_path / "big.zip", {"a.bin": os.urandom(50_000), "b.bin": os.urandom(50_000)})
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=60_000))
    with pytest.raises(DiskFullError) as info:
        extract_archive(archive, tmp_path / "work" / "out")
    assert info.value.message == (
        f"not enough free space in {tmp_path / 'work'} to extract big.zip: needs 97.7 KiB, 58.6 KiB free"
    )
    assert _leftovers(tmp_path / "work") == []


def test_disk_filling_up_during_extraction_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _zip(tmp_path / "ok.zip", {"a.txt": b"abc"})

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "extract", full)
    with pytest.raises(DiskFullError, match=r"^no space left in .*work to extract ok\.zip \(needs 3 B, "):
        extract_archive(archive, tmp_path / "work" / "out")
    assert _leftovers(tmp_path / "work") == []


def test_member_name_too_long_for_the_file_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "d/" + "x" * 300 + ".png"
    archive = _zip(tmp_path / "long.zip", {"ok.txt": b"ok", name: b"png"})
    with pytest.raises(RefineError) as info:
        extract_archive(archive, tmp_path / "work" / "out")
    assert "has a name longer than the 255 bytes" in info.value.message and "corrupt" not in info.value.message
    # the same line when the file system only says so on writing (ENAMETOOLONG, not 'corrupt or truncated')
    monkeypatch.setattr(os, "pathconf", lambda path, key: 10_000)
    with pytest.raises(
        RefineError, match=r"member 'd/x+\.png' has a name too long for what the file system at .* allows"
    ):
        extract_archive(archive, tmp_path / "work" / "out")
    assert _leftovers(tmp_path / "work") == []


def test_an_extraction_missing_a_member_is_never_marked_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _zip(tmp_path / "ok.zip", {"a.txt": b"a", "b.txt": b"b"})
    real = zipfile.ZipFile.extract

    def lose_b(self: zipfile.ZipFile, member: zipfile.ZipInfo, path: str) -> str:
        return "" if member.filename == "b.txt" else real(self, member, path)  # e.g. deleted by another process

    monkeypatch.setattr(zipfile.ZipFile, "extract", lose_b)
    with pytest.raises(RefineError, match="is incomplete: 1 of 2 members are missing, e.g. 'b.txt'"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not is_extracted(archive, tmp_path / "out")


def test_a_second_extraction_waits_for_the_first_and_reuses_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Two `refine prepare` on one root: the second waits on the lock, then takes the finished extraction."""
    archive = _zip(tmp_path / "data.zip", {"a.txt": b"a"})
    target = tmp_path / "x" / "data"
    target.parent.mkdir()
    results: list[object] = []
    with FileLock(str(tmp_path / "x" / ".data.lock")):  # "the first process" is extracting
        second = threading.Thread(target=lambda: results.append(extract_archive(archive, target)))
        second.start()
        time.sleep(0.3)
        assert second.is_alive() and results == []  # waiting, not extracting alongside
        extract_module._extract_locked(archive, target, progress=False)  # the first one finishes
        (target / "a.txt").write_bytes(b"first")
    second.join(5)
    assert results == [target] and (target / "a.txt").read_bytes() == b"first"  # reused, not redone
    assert "waiting: extraction of data.zip into" in capfd.readouterr().err


def test_lock_wait_is_bounded(tmp_path: Path) -> None:
    lock_file = tmp_path / ".data.lock"
    with FileLock(str(lock_file)), pytest.raises(RefineError, match="extraction of data.zip into .* is in use by"):
        with hold_lock(tmp_path / "data", "extraction of data.zip into", wait=0.2):
            pass
