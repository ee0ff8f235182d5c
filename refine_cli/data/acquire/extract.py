"""Safe, once-only extraction of tar/tgz/zip archives.

Archives come from mirrors we do not control, so every member is checked before it is written:
absolute names, '..' components, links that leave the target and device files reject the whole
archive, and so does an archive that expands past REFINE_MAX_EXPANSION x its size (zip bombs) or
past the free disk space. Extraction goes to a temporary folder that is renamed into place only
when every member is there, with a marker recording which archive (size + mtime) it came from, so
a rerun reuses it and an interrupted extraction never looks finished. A file lock per target lets
two `refine prepare` runs share one extraction: the second waits, then reuses the first's.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import shutil
import stat
import sys
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

from refine_cli.data.acquire.limits import MAX_EXPANSION_ENV, max_expansion
from refine_cli.errors import RefineError
from refine_cli.fileio import DiskFullError, disk_full_error, free_bytes, human_bytes, is_disk_full
from refine_cli.locks import hold_lock

MARKER_PREFIX = ".extracted-"
_EXPANSION_FLOOR = 1 << 20  # a tiny archive may always expand to 1 MiB (a small, very regular text file)
LOCK_TIMEOUT = 3 * 3600.0  # seconds a second process waits for another one's extraction or download


def wait_note(line: str) -> None:
    """Where a process waiting for another one's download or extraction says so (stderr, once)."""
    sys.stderr.write(line + "\n")


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


def _long_name_error(archive: Path, member: str, folder: Path, name_max: int | None) -> RefineError:
    limit = f"longer than the {name_max} bytes" if name_max else "too long for what"
    return RefineError(
        f"cannot extract {archive}: member {member!r} has a name {limit} the file system at {folder} allows",
        hint="extract it on a file system that allows longer names (e.g. ext4 instead of an encrypted home)",
    )


class _Budget:
    """What an archive may expand to: its size x the expansion limit, and the free space of the disk.

    Checked against the members' declared sizes before they are written (the sizes bound what
    tarfile and zipfile write), so a bomb is refused before it fills anything.
    """

    def __init__(self, archive: Path, folder: Path) -> None:
        self.archive, self.folder = archive, folder
        self.size = archive.stat().st_size
        self.ratio = max_expansion()
        self.free = free_bytes(folder)
        try:
            self.name_max = os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError, AttributeError):
            self.name_max = 255
        self.total = 0

    def check_name(self, member: str) -> None:
        if any(len(part.encode("utf-8", "surrogateescape")) > self.name_max for part in member.split("/")):
            raise _long_name_error(self.archive, member, self.folder, self.name_max)

    def add(self, nbytes: int, complete: bool) -> None:
        """Count `nbytes` more; `complete` when the total of all members is now known (zip)."""
        self.total += nbytes
        amount = human_bytes(self.total) + ("" if complete else " or more")
        if self.ratio and self.total > max(self.ratio * self.size, _EXPANSION_FLOOR):
            raise RefineError(
                f"refusing to extract {self.archive}: its members expand to {amount}, more than "
                f"{self.ratio:g} x its size ({human_bytes(self.size)}), like a zip bomb",
                hint=f"if you trust it, raise the limit: `refine prepare --max-expansion N ...` or "
                f"{MAX_EXPANSION_ENV}=N (0 = no limit)",
            )
        if self.total > self.free:
            raise DiskFullError(
                f"not enough free space in {self.folder} to extract {self.archive.name}: "
                f"needs {amount}, {human_bytes(self.free)} free",
                hint="free some space there or choose another --root",
            )


def _bar(total: int | None, desc: str, enabled: bool):  # noqa: ANN202 - a tqdm instance
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=" files", disable=not enabled, leave=False)


def _extract_tar(archive: Path, dest: Path, budget: _Budget, progress: bool) -> list[str]:
    data_filter = getattr(tarfile, "data_filter", None)  # Python >= 3.11.4 / 3.10.12: defence in depth
    names: list[str] = []
    with tarfile.open(archive, "r:*") as tar:
        bar = _bar(None, f"extract {archive.name}", progress)
        for member in tar:  # one pass: a .tgz is decompressed once, so sizes are checked as we go
            problem = _check_tar_member(member)
            if problem:
                raise _reject(archive, member.name, problem)
            budget.check_name(member.name)
            budget.add(member.size if member.isreg() else 0, complete=False)
            if data_filter is not None:
                try:
                    tar.extract(member, dest, filter="data")
                except tarfile.FilterError as error:
                    raise _reject(archive, member.name, str(error)) from None
            else:  # pragma: no cover - old Python
                tar.extract(member, dest)
            names.append(member.name)
            bar.update(1)
        bar.close()
    return names


def _extract_zip(archive: Path, dest: Path, budget: _Budget, progress: bool) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # check everything first: zip has a central directory, so this is cheap
            problem = _check_zip_member(info, zf)
            if problem:
                raise _reject(archive, info.filename, problem)
            budget.check_name(info.filename.rstrip("/"))
        budget.add(sum(info.file_size for info in infos), complete=True)  # zipfile never writes more
        bar = _bar(len(infos), f"extract {archive.name}", progress)
        for info in infos:
            zf.extract(info, dest)
            bar.update(1)
        bar.close()
    return [info.filename for info in infos]


def _missing_members(dest: Path, names: list[str]) -> list[str]:
    return [name for name in names if not os.path.lexists(dest / name.rstrip("/"))]


def extract_archive(archive: Path, target: Path, progress: bool = False) -> Path:
    """Extract `archive` (tar, tar.gz/tgz, tar.bz2, tar.xz or zip) into `target` once; return `target`.

    A second call with the same archive file returns immediately; a concurrent one waits for the
    first and then returns. A changed archive (other size or mtime) replaces the old extraction.
    A corrupt or truncated archive raises RefineError naming it.
    """
    archive = Path(archive)
    target = Path(target)
    if is_extracted(archive, target):
        return target
    if not archive.is_file():
        raise RefineError(f"archive {archive} does not exist")
    target.parent.mkdir(parents=True, exist_ok=True)
    with hold_lock(target, f"extraction of {archive.name} into", wait=LOCK_TIMEOUT, announce=wait_note):
        if is_extracted(archive, target):  # another process finished it while we waited
            return target
        _extract_locked(archive, target, progress)
    return target


def _extract_locked(archive: Path, target: Path, progress: bool) -> None:
    if target.exists():
        if not any(target.glob(f"{MARKER_PREFIX}*")):
            raise RefineError(
                f"{target} exists but was not extracted by refine",
                hint="move it away or delete it, then rerun",
            )
        shutil.rmtree(target)  # a stale extraction of an older copy of the archive
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
    budget = _Budget(archive, target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        names = extractor(archive, tmp, budget, progress)
        missing = _missing_members(tmp, names)
        if missing:  # never mark an extraction complete that lacks a member
            raise RefineError(
                f"extraction of {archive} is incomplete: {len(missing)} of {len(names)} members are missing, "
                f"e.g. {missing[0]!r}",
                hint="make sure nothing else writes into that folder, then rerun",
            )
        (tmp / f"{MARKER_PREFIX}{archive.name}").write_text(json.dumps(_marker_stamp(archive)), encoding="utf-8")
        os.replace(tmp, target)  # the marker travels with the members: complete, or not there at all
    except RefineError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError) as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _extraction_error(archive, target, budget, error) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _extraction_error(archive: Path, target: Path, budget: _Budget, error: BaseException) -> RefineError:
    """One line for an extraction that failed while writing: full disk, no permission, long name, or bad data."""
    if is_disk_full(error):
        return disk_full_error(target.parent, budget.total, f"extract {archive.name}")
    if isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG:
        member = os.path.relpath(error.filename, target.parent) if error.filename else "?"
        return _long_name_error(archive, member.split(os.sep, 1)[-1], target.parent, None)  # name or whole path
    if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EROFS):
        return RefineError(
            f"cannot write the extraction of {archive.name} into {target.parent}: {error.strerror}",
            hint="choose another --root",
        )
    detail = " ".join(str(error).split()) or type(error).__name__
    return RefineError(
        f"cannot extract {archive}: it is corrupt or truncated ({detail})",
        hint=f"delete {archive} and download it again",
    )
