"""Atomic file writes, and disk space: a file appears under its final name only once it is complete.

A full disk is not a bug nor a network error: every writer here turns ENOSPC into one DiskFullError
line that says how much was needed where and how much is free, after removing its temporary file.
`ensure_free_space` lets long jobs (download, extraction, conversion) refuse up front instead.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from refine_cli.errors import RefineError

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# Below this, a write that failed without an errno (torch.save's C++ writer raises RuntimeError) is
# taken as a full disk: a disk with less than 1 MiB left cannot hold a checkpoint anyway.
_NEARLY_FULL = 1 << 20
_SPACE_HINT = "free some space there, or choose another output folder"


class DiskFullError(RefineError):
    """The disk (or quota) has no room for what is being written."""

    def __reduce__(self) -> tuple[Any, ...]:  # keep the hint when it crosses a process pool
        return (type(self), (self.message, self.hint))


def human_bytes(size: float) -> str:
    """1536 -> '1.5 KiB': sizes in messages people read."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop always returns


def free_bytes(folder: str | os.PathLike[str]) -> int:
    """Bytes an unprivileged user may still write in `folder` (or its nearest existing parent)."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def is_disk_full(error: BaseException) -> bool:
    """True for ENOSPC / EDQUOT, however deep in a library it was raised."""
    return isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS


def disk_full_error(folder: str | os.PathLike[str], needed: int | None, what: str) -> DiskFullError:
    """The one line for a write that hit a full disk: what, where, how much it needed, how much is free."""
    try:
        free = human_bytes(free_bytes(folder))
    except OSError:
        free = "unknown"
    need = f"needs {human_bytes(needed)}" if needed else "needs more space"
    return DiskFullError(f"no space left in {folder} to {what} ({need}, {free} free)", hint=_SPACE_HINT)


def ensure_free_space(folder: str | os.PathLike[str], needed: int, what: str, hint: str | None = None) -> None:
    """Refuse, before any work, a job that needs `needed` bytes in `folder` when fewer are free."""
    free = free_bytes(folder)
    if needed > free:
        raise DiskFullError(
            f"not enough free space in {folder} to {what}: needs {human_bytes(needed)}, {human_bytes(free)} free",
            hint=hint or _SPACE_HINT,
        )


def temporary_name(final: Path) -> Path:
    """The hidden `.NAME.<pid>-<thread>.part` sibling used while `final` is written.

    Unique per process and thread, so parallel writers never collide without random-name retries;
    a killed run's leftovers match `.*.part` and are cleaned up by whoever owns the folder.
    """
    return final.parent / f".{final.name}.{os.getpid()}-{threading.get_ident()}.part"


def _looks_full(error: BaseException, folder: Path) -> bool:
    if is_disk_full(error):
        return True
    if not isinstance(error, Exception) or isinstance(error, (OSError, RefineError)):
        return False
    try:
        return free_bytes(folder) < _NEARLY_FULL
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only if the block succeeds.

    Same directory so the rename is atomic on POSIX; the temporary file is removed on any error,
    so an interrupted write never leaves a half-written file under the final name. The file is
    created by the caller with the usual umask mode (0644), so shared datasets stay readable.
    A full disk becomes a DiskFullError naming the file and how much had been written.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException as error:
        try:
            written = tmp.stat().st_size
        except OSError:
            written = 0
        tmp.unlink(missing_ok=True)
        if _looks_full(error, final.parent):
            what = f"write {final.name}" + (f" ({human_bytes(written)} written when it failed)" if written else "")
            raise disk_full_error(final.parent, None, what) from None
        raise


def write_bytes_atomic(final: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `final` atomically: one open, one write, one rename (the per-sample hot path)."""
    final = Path(final)
    tmp = temporary_name(final)
    try:
        try:
            fd = os.open(tmp, _OPEN_FLAGS, 0o666)
        except FileNotFoundError:  # first file of its folder: create the folder (not a stat per file)
            final.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, _OPEN_FLAGS, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if is_disk_full(error):
            raise disk_full_error(final.parent, len(data), f"write {final.name}") from None
        raise


def write_text_atomic(final: str | os.PathLike[str], text: str) -> None:
    """Write `text` (UTF-8) to `final` atomically."""
    write_bytes_atomic(final, text.encode("utf-8"))


def write_json_atomic(final: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented JSON to `final` atomically."""
    write_text_atomic(final, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def check_writable_folder(folder: Path) -> None:
    """Create `folder` and prove a file can be written there, before hours of training are spent."""
    if folder.exists() and not folder.is_dir():
        raise RefineError(f"output folder {folder} is a file", hint="choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise RefineError(f"output folder {folder} is not writable ({reason})", hint="choose another --out") from None
