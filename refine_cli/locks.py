"""One writer per output: an OS file lock beside what a command writes, naming its holder when refused.

    with hold_lock(Path("data/voc"), "dataset"):      # locks data/.voc.lock, holder in data/.voc.lock.holder
        ...write data/voc...

The lock is filelock's `FileLock` (flock(2) on POSIX): the kernel drops it when the holding process
ends, however it ends (kill -9, OOM killer, power loss on a local disk), so a dead holder never blocks
anyone. The lock sits beside the protected path, not inside it, so it can be taken before the folder
exists and never shows up among the folder's files. The holder's pid, host, command and start time go
into a small JSON sidecar so a refused second process can say who is in the way; the sidecar is only
information (a stale one left by a killed holder is simply overwritten by the next one).

Readers of what a writer makes (`check`, `eval --data`, `train --data` open a dataset) call
`wait_for_writer` first: it waits for a running writer like `hold_lock` does, with the same rule
and the same refusal, but lets go at once, so readers never hold each other up.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from refine_cli.envvars import env_number
from refine_cli.errors import RefineError
from refine_cli.fileio import write_json_atomic

if TYPE_CHECKING:
    from filelock import BaseFileLock

LOCK_WAIT_ENV = "REFINE_LOCK_WAIT"
DEFAULT_WAIT_S = 5.0  # long enough for a finishing holder to let go, short enough not to look hung
_LOCK_SUFFIX = ".lock"
_HOLDER_SUFFIX = ".lock.holder"
# A reader holds the lock only for the moment between taking and releasing it, so one that finds it
# busy for this long is looking at a writer, not at another reader.
READER_GRACE_S = 0.5
_held_here: set[Path] = set()  # lock files this process holds: its own reads of what it writes never wait


class LockBusyError(RefineError):
    """Another process holds the lock: callers that fall back on other errors must still report this one."""


def lock_file_for(target: str | os.PathLike[str]) -> Path:
    """`<parent>/.<name>.lock` for the folder or file `target`."""
    target = Path(os.path.realpath(Path(target).expanduser()))  # one lock however the path is spelt
    return target.parent / f".{target.name}{_LOCK_SUFFIX}"


def holder_file_for(target: str | os.PathLike[str]) -> Path:
    """The JSON sidecar that names the current holder of `target`'s lock."""
    lock = lock_file_for(target)
    return lock.with_name(lock.name[: -len(_LOCK_SUFFIX)] + _HOLDER_SUFFIX)


def default_wait() -> float:
    """Seconds to wait for a busy lock: $REFINE_LOCK_WAIT, else 5 (negative = wait for ever)."""
    hint = "e.g. 60, or -1 for ever"
    return env_number(LOCK_WAIT_ENV, DEFAULT_WAIT_S, allow_negative=True, what="a number of seconds", hint=hint)


def read_holder(target: str | os.PathLike[str]) -> dict[str, object] | None:
    """The holder record of `target`'s lock (pid, host, command, since, what), or None when unreadable."""
    try:
        record = json.loads(holder_file_for(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def describe_holder(record: dict[str, object] | None) -> str:
    """'pid 123 on host h, `refine prepare voc`, since 2026-01-01 12:00:00 UTC' (or a neutral phrase)."""
    if not record:
        return "another process (it has not written its details yet)"
    since = record.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(since))) if isinstance(since, (int, float)) else "?"
    return f"pid {record.get('pid', '?')} on {record.get('host', '?')}, `{record.get('command', '?')}`, since {when}"


def _this_holder(what: str) -> dict[str, object]:
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    name = f"python -m {program.parent.name}" if program.name == "__main__.py" else program.name
    name = "python -c" if name == "-c" else name
    argv = [name, *sys.argv[1:]]
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(argv),
        "since": time.time(),
        "what": what,
    }


@contextlib.contextmanager
def hold_lock(
    target: str | os.PathLike[str],
    what: str,
    wait: float | None = None,
    announce: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Hold the exclusive lock on `target` (a folder or file this process is about to write) for the block.

    `what` names the target for the user ("dataset folder", "training run"). A busy lock is waited for
    `wait` seconds (default: $REFINE_LOCK_WAIT or 5; negative = for ever), then a RefineError names the
    holder; `announce` (if given) is told once, when the wait starts, so a long wait never looks hung.
    Yields the lock file's path. Not re-entrant: a second hold in the same process waits like any other.
    """
    from filelock import FileLock

    lock_path = lock_file_for(target)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path, thread_local=False)
    _acquire(lock, target, what, default_wait() if wait is None else wait, announce)
    _held_here.add(lock_path)
    holder_file = holder_file_for(target)
    try:
        write_json_atomic(holder_file, _this_holder(what))
        yield lock_path
    finally:
        with contextlib.suppress(OSError):
            holder_file.unlink()  # before unlocking: the next holder writes its own
        _held_here.discard(lock_path)
        lock.release()


def wait_for_writer(target: str | os.PathLike[str], what: str, wait: float | None = None) -> None:
    """Return once no other process holds `target`'s lock, so a reader never sees a half-written `target`.

    The same wait and the same refusal as `hold_lock` (`wait` default: $REFINE_LOCK_WAIT or 5), but the
    lock is released at once and no holder record is written: readers do not block each other (a
    busy lock is given at least READER_GRACE_S, the most another reader holds it), and a writer
    that starts after this returns is not kept out. Nothing is created: a target that no locking
    command ever wrote has no lock file and is read at once; so is one whose lock file this user
    cannot open (another user's, a read-only disk), as there is nothing this process could wait on.
    The lock of a writer in this very process (prepare checking what it wrote) is not waited for.
    """
    from filelock import FileLock

    lock_path = lock_file_for(target)
    if lock_path in _held_here or not lock_path.is_file():
        return
    seconds = default_wait() if wait is None else wait
    if seconds >= 0:
        seconds = max(seconds, READER_GRACE_S)
    lock = FileLock(lock_path, thread_local=False)
    try:
        _acquire(lock, target, what, seconds, None)  # quiet, like a writer: a refusal stays one line
    except OSError:  # another user's lock file (EACCES), a read-only mount (EROFS): no writer can be here either
        return
    lock.release()


def _acquire(
    lock: BaseFileLock,
    target: str | os.PathLike[str],
    what: str,
    seconds: float,
    announce: Callable[[str], None] | None,
) -> None:
    """Take `lock` within `seconds` (negative: for ever), or raise the one line that names its holder."""
    from filelock import Timeout

    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if announce is not None:
                announce(f"waiting: {what} {target} is in use by {describe_holder(read_holder(target))}")
            lock.acquire(timeout=seconds)
    except Timeout:
        holder = describe_holder(read_holder(target))
        raise LockBusyError(
            f"{what} {target} is in use by {holder}",
            hint=f"wait for it to finish, or set {LOCK_WAIT_ENV}=SECONDS to wait longer; a holder that died "
            "releases the lock by itself",
        ) from None
