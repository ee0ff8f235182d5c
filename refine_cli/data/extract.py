"""Safe, once-only extraction of tar/tgz/zip archives.

Archives come from mirrors we do not control, so every member is checked before it is written:
absolute names, '..' components, links that leave the target and device files reject the whole
archive. Extraction goes to a temporary folder that is renamed into place at the end, with a marker
recording which archive (size + mtime) it came from, so a rerun reuses it and an interrupted
extraction never looks finished.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

from refine_cli.errors import RefineError

MARKER_PREFIX = ".extracted-"


def _marker_stamp(archive: Path) -> dict[str, object]:
    info = archive.stat()
    return {"archive": archive.name, "size": info.st_size, "mtime_ns": info.st_mtime_ns}


def is_extracted(archive: Path, target: Path) -> bool:
    """True when `target` holds a finished extraction of this very archive file."""
    marker = target / f"{MARKER_PREFIX}{archive.name}"
    try:
        return json.loads(marker.read_text(encoding="utf-8")) == _marker_stamp(archive)
    except (OSError, ValueError):
        return False


def _unsafe_name(name: str) -> str | None:
    """Why a member name may not be written, or None if it stays inside the target."""
    if not name or "\x00" in name:
        return "an empty or invalid name"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "a '..' component"
    return None


def _escapes(base_dir: str, link: str) -> bool:
    """Does `link`, resolved from the member's folder `base_dir`, point outside the archive root?"""
    if link.startswith(("/", "\\")):
        return True
    resolved = posixpath.normpath(posixpath.join(base_dir, link.replace("\\", "/")))
    return resolved == ".." or resolved.startswith("../") or resolved.startswith("/")


def _check_tar_member(member: tarfile.TarInfo) -> str | None:
    problem = _unsafe_name(member.name)
    if problem:
        return problem
    if member.issym() and _escapes(posixpath.dirname(member.name), member.linkname):
        return f"a symbolic link to {member.linkname!r} outside the target"
    if member.islnk() and (_unsafe_name(member.linkname) or _escapes("", member.linkname)):
        return f"a hard link to {member.linkname!r} outside the target"
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        return "a device or FIFO entry"
    return None


def _check_zip_member(info: zipfile.ZipInfo, archive: zipfile.ZipFile) -> str | None:
    problem = _unsafe_name(info.filename)
    if problem:
        return problem
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        link = archive.read(info).decode("utf-8", "replace")
        if _escapes(posixpath.dirname(info.filename.rstrip("/")), link):
            return f"a symbolic link to {link!r} outside the target"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        return "a device or FIFO entry"
    return None


def _reject(archive: Path, member: str, problem: str) -> RefineError:
    return RefineError(
        f"refusing to extract {archive}: member {member!r} has {problem}",
        hint="the archive is not safe to unpack; get it from an official source",
    )


def _bar(total: int | None, desc: str, enabled: bool):  # noqa: ANN202 - a tqdm instance
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=" files", disable=not enabled, leave=False)


def _extract_tar(archive: Path, dest: Path, progress: bool) -> None:
    data_filter = getattr(tarfile, "data_filter", None)  # Python >= 3.11.4 / 3.10.12: defence in depth
    with tarfile.open(archive, "r:*") as tar:
        bar = _bar(None, f"extract {archive.name}", progress)
        for member in tar:  # one pass: a .tgz is decompressed once
            problem = _check_tar_member(member)
            if problem:
                raise _reject(archive, member.name, problem)
            if data_filter is not None:
                try:
                    tar.extract(member, dest, filter="data")
                except tarfile.FilterError as error:
                    raise _reject(archive, member.name, str(error)) from None
            else:  # pragma: no cover - old Python
                tar.extract(member, dest)
            bar.update(1)
        bar.close()


def _extract_zip(archive: Path, dest: Path, progress: bool) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # check everything first: zip has a central directory, so this is cheap
            problem = _check_zip_member(info, zf)
            if problem:
                raise _reject(archive, info.filename, problem)
        bar = _bar(len(infos), f"extract {archive.name}", progress)
        for info in infos:
            zf.extract(info, dest)
            bar.update(1)
        bar.close()


def extract_archive(archive: Path, target: Path, progress: bool = False) -> Path:
    """Extract `archive` (tar, tar.gz/tgz, tar.bz2, tar.xz or zip) into `target` once; return `target`.

    A second call with the same archive file returns immediately. A changed archive (other size or
    mtime) replaces the old extraction. A corrupt or truncated archive raises RefineError naming it.
    """
    archive = Path(archive)
    target = Path(target)
    if is_extracted(archive, target):
        return target
    if not archive.is_file():
        raise RefineError(f"archive {archive} does not exist")
    if target.exists():
        if not any(target.glob(f"{MARKER_PREFIX}*")):
            raise RefineError(
                f"{target} exists but was not extracted by refine",
                hint="move it away or delete it, then rerun",
            )
        shutil.rmtree(target)  # a stale extraction of an older copy of the archive
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.part"):  # left by an extraction that was killed
        shutil.rmtree(stale, ignore_errors=True)
    if zipfile.is_zipfile(archive):
        extractor = _extract_zip
    elif tarfile.is_tarfile(archive):
        extractor = _extract_tar
    else:
        raise RefineError(
            f"{archive} is neither a tar nor a zip archive (it may be truncated or corrupt)",
            hint=f"delete {archive} and download it again",
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        extractor(archive, tmp, progress)
        (tmp / f"{MARKER_PREFIX}{archive.name}").write_text(json.dumps(_marker_stamp(archive)), encoding="utf-8")
        os.replace(tmp, target)
    except RefineError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError) as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT):
            raise RefineError(
                f"cannot write the extraction of {archive.name} into {target.parent}: {error.strerror}",
                hint="free some space or choose another --root",
            ) from None
        detail = " ".join(str(error).split()) or type(error).__name__
        raise RefineError(
            f"cannot extract {archive}: it is corrupt or truncated ({detail})",
            hint=f"delete {archive} and download it again",
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
