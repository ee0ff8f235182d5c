"""Extraction: traversal attempts are refused, corrupt archives fail clearly, extraction is reused."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from refine_cli.data.extract import extract_archive, is_extracted
from refine_cli.errors import RefineError


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
