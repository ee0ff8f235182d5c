"""Atomic file writes: a file appears under its final name only once it is complete."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def temporary_name(final: Path) -> Path:
    """The hidden `.NAME.<pid>-<thread>.part` sibling used while `final` is written.

    Unique per process and thread, so parallel writers never collide without random-name retries;
    a killed run's leftovers match `.*.part` and are cleaned up by whoever owns the folder.
    """
    return final.parent / f".{final.name}.{os.getpid()}-{threading.get_ident()}.part"


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only if the block succeeds.

    Same directory so the rename is atomic on POSIX; the temporary file is removed on any error,
    so an interrupted write never leaves a half-written file under the final name. The file is
    created by the caller with the usual umask mode (0644), so shared datasets stay readable.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
        with open(fd, "wb", closefd=True) as handle:
            handle.write(data)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(final: str | os.PathLike[str], text: str) -> None:
    """Write `text` (UTF-8) to `final` atomically."""
    write_bytes_atomic(final, text.encode("utf-8"))


def write_json_atomic(final: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented JSON to `final` atomically."""
    write_text_atomic(final, json.dumps(obj, indent=2, sort_keys=False) + "\n")
