"""Getting source files: resumable, verified downloads, or archives the user already has.

A download streams into `<file>.part` (resumed with an HTTP Range request after a cut), hashes while
it streams, falls back to the next mirror on permanent errors, and is renamed to its final name only
after size and checksums match. So a file under its final name in the downloads folder is always a
verified, complete copy. A mirror that stalls (data/acquire/limits.py) is retried once, then the next one is
tried; a full disk stops at once with one line. The Cityscapes login client uses this same core.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, NoReturn

from refine_cli import __version__
from refine_cli.data.acquire.extract import LOCK_TIMEOUT, wait_note
from refine_cli.data.acquire.limits import RateGuard, Stalled, StallRules
from refine_cli.data.acquire.manifest import Source
from refine_cli.data.acquire.verify import CHUNK, ChecksumError, byte_bar, hash_file, verify_file
from refine_cli.data.acquire.verify import (
    measured_sha256 as measured_sha256,  # re-exported: callers import it from here
)
from refine_cli.errors import RefineError
from refine_cli.fileio import disk_full_error, ensure_free_space, is_disk_full
from refine_cli.locks import hold_lock

DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 1.0
_PERMANENT_HTTP = {400, 401, 403, 404, 405, 410, 451}
_REDIRECT_HTTP = {301, 302, 303, 307, 308}  # only seen with an opener that does not follow them (a login session)
_STALLS_PER_MIRROR = 2  # a stalled mirror is retried once, then the next one is tried
ProgressFn = Callable[[int, "int | None"], None]


class _MirrorFailed(Exception):
    """This URL cannot deliver the file (wrong size, wrong content, permanent HTTP error)."""


def _open(
    url: str, offset: int, timeout: float, opener: urllib.request.OpenerDirector | None
) -> http.client.HTTPResponse:
    headers = {"User-Agent": f"refine/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        if opener is not None:
            return opener.open(request, timeout=timeout)
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310
    except TimeoutError:
        raise Stalled(f"no answer for {timeout:g} s") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise Stalled(f"no answer for {timeout:g} s") from None
        raise


def _stream(
    response: http.client.HTTPResponse,
    handle,  # noqa: ANN001 - a binary file
    hashers: dict,
    guard: RateGuard,
    done: int,
    total: int | None,
    bar,  # noqa: ANN001 - a tqdm instance
    on_progress: ProgressFn | None,
) -> None:
    """Copy the body into `handle`: read1 returns what has arrived, so the stall rules see every byte."""
    while True:
        try:
            chunk = response.read1(CHUNK)
        except TimeoutError:
            raise Stalled(f"no data for {guard.rules.stall_seconds:g} s") from None
        if not chunk:
            return
        handle.write(chunk)
        for hasher in hashers.values():
            hasher.update(chunk)
        done += len(chunk)
        bar.update(len(chunk))
        if on_progress is not None:
            on_progress(done, total)
        guard.update(len(chunk))


def _fetch_once(
    url: str,
    part: Path,
    expected_size: int | None,
    algos: list[str],
    progress: bool,
    timeout: float,
    rules: StallRules,
    opener: urllib.request.OpenerDirector | None = None,
    on_progress: ProgressFn | None = None,
) -> dict[str, str]:
    """One attempt: continue `part` from where it stops; return the digests of the whole file."""
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()
        offset = 0
    if expected_size is not None and offset == expected_size and offset > 0:
        return hash_file(part, algos)
    try:
        response = _open(url, offset, min(timeout, rules.stall_seconds), opener)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # our part may already be the whole file
            total = (error.headers.get("Content-Range") or "").rpartition("/")[2]
            if total.isdigit() and int(total) == offset:
                return hash_file(part, algos)
            if expected_size is not None:  # the part fits the manifest: this mirror serves another file
                raise _MirrorFailed(f"server has no byte {offset} of a {expected_size}-byte file") from None
            part.unlink()  # no size to judge by: the part may be the wrong one, start over
        raise
    with response:
        offset, total_size = _offered(response, offset, expected_size)
        hashers = {algo: hashlib.new(algo) for algo in algos}
        if offset:
            with open(part, "rb") as handle:  # resuming: hash what we already have
                while chunk := handle.read(CHUNK):
                    for hasher in hashers.values():
                        hasher.update(chunk)
        bar = byte_bar(expected_size or total_size, part.name.removesuffix(".part"), progress)
        bar.update(offset)
        try:
            with open(part, "ab" if offset else "wb") as handle:
                _stream(response, handle, hashers, RateGuard(rules), offset, total_size, bar, on_progress)
        finally:
            bar.close()
    size = part.stat().st_size
    if total_size is not None and size != total_size:
        raise http.client.IncompleteRead(b"", total_size - size)
    return {algo: hasher.hexdigest() for algo, hasher in hashers.items()}


def _offered(response: http.client.HTTPResponse, offset: int, expected_size: int | None) -> tuple[int, int | None]:
    """(byte the body starts at, whole file size or None) as the server answered; a mirror that answers
    another range or offers another size than the manifest's is given up (_MirrorFailed)."""
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")
        start = content_range.removeprefix("bytes ").partition("-")[0]
        if not start.isdigit() or int(start) != offset:
            raise _MirrorFailed(f"server answered range {content_range!r} to a request from byte {offset}")
        total = content_range.rpartition("/")[2]
        total_size = int(total) if total.isdigit() else None
    else:
        offset = 0  # the server ignored Range (or there was nothing to resume): start over
        length = response.headers.get("Content-Length")
        total_size = int(length) if length and length.isdigit() else None
    if expected_size is not None and total_size is not None and total_size != expected_size:
        raise _MirrorFailed(f"server offers {total_size} bytes, the manifest expects {expected_size}")
    return offset, total_size


_HOST_NOT_FOUND = "host not found (no network or DNS?)"


def _already_there(dest: Path, expected_size: int | None, expected: dict[str, str]) -> bool:
    """A complete copy another process finished while we waited for the download lock."""
    if not dest.is_file() or not (expected or expected_size):
        return False
    if expected_size is not None and dest.stat().st_size != expected_size:
        return False
    actual = hash_file(dest, list(expected)) if expected else {}
    return all(actual[algo] == want for algo, want in expected.items())


def download(
    urls: str | list[str],
    dest: Path,
    expected_size: int | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    checksums: dict[str, str] | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    rules: StallRules | None = None,
    opener: urllib.request.OpenerDirector | None = None,
    on_progress: ProgressFn | None = None,
) -> Path:
    """Download to `dest` via `dest.part`, resuming, retrying, trying mirrors in order; verify; rename.

    Transient failures (cut connections, timeouts, 5xx) are retried with exponential back-off and a
    Range request; a stall (see `rules`, default from the environment) is retried once; permanent
    failures (404, wrong size, wrong checksum) move on to the next mirror. `opener` carries a login
    session's cookies; `on_progress(done, total)` is called as bytes arrive. One process at a time
    downloads a given file: a second one waits, then takes the finished copy.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    rules = rules or StallRules.from_env()
    expected = {algo: value.lower() for algo, value in (checksums or {}).items()}
    with hold_lock(dest, "download", wait=LOCK_TIMEOUT, announce=wait_note):
        if _already_there(dest, expected_size, expected):
            return dest
        part = dest.with_name(dest.name + ".part")
        if expected_size is not None:
            have = part.stat().st_size if part.is_file() else 0
            ensure_free_space(dest.parent, max(0, expected_size - have), f"download {dest.name}")
        url_list = [urls] if isinstance(urls, str) else list(urls)
        fetch = functools.partial(
            _fetch_once, part=part, expected_size=expected_size, algos=list(expected), progress=progress,
            timeout=timeout, rules=rules, opener=opener, on_progress=on_progress,
        )  # fmt: skip
        return _download_locked(url_list, dest, part, expected_size, fetch, expected, retries, backoff)


def _download_locked(
    url_list: list[str],
    dest: Path,
    part: Path,
    expected_size: int | None,
    fetch: Callable[..., dict[str, str]],
    expected: dict[str, str],
    retries: int,
    backoff: float,
) -> Path:
    """The mirror and retry loop of `download`, run while holding the file's lock."""
    failures: list[str] = []
    mismatch: tuple[str, str, str] | None = None
    for url in url_list:
        stalls = 0
        for attempt in range(retries + 1):
            try:
                actual = fetch(url)
            except urllib.error.HTTPError as error:
                if error.code in _PERMANENT_HTTP or error.code in _REDIRECT_HTTP:
                    failures.append(f"{url}: HTTP {error.code}")
                    break
                reason = f"HTTP {error.code}"
            except _MirrorFailed as error:  # raised before any byte is written: the partial file stays good
                failures.append(f"{url}: {error}")
                break
            except Stalled as error:
                stalls += 1
                reason = f"stalled: {error}"
                if stalls >= _STALLS_PER_MIRROR:
                    failures.append(f"{url}: {reason} ({stalls} times)")
                    break
            except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
                if is_disk_full(error):  # not the network's fault: retrying or another mirror won't help
                    have = part.stat().st_size if part.is_file() else 0
                    need = expected_size - have if expected_size else None
                    raise disk_full_error(dest.parent, need, f"download {dest.name}") from None
                cause = getattr(error, "reason", None)
                if isinstance(cause, socket.gaierror):  # the host name does not resolve: retrying won't help
                    failures.append(f"{url}: {_HOST_NOT_FOUND}")
                    break
                reason = str(cause or error) or type(error).__name__
            else:
                wrong = [(algo, want, actual[algo]) for algo, want in expected.items() if actual[algo] != want]
                if wrong:
                    mismatch = wrong[0]
                    failures.append(f"{url}: {wrong[0][0]} mismatch")
                    part.unlink(missing_ok=True)  # wrong bytes cannot be resumed into right ones
                    break
                os.replace(part, dest)
                return dest
            if attempt < retries:
                time.sleep(backoff * (2**attempt))
            else:
                failures.append(f"{url}: {reason} (after {retries + 1} attempts)")
    _give_up(dest, part, failures, mismatch)


def _give_up(dest: Path, part: Path, failures: list[str], mismatch: tuple[str, str, str] | None) -> NoReturn:
    """Every mirror failed: one line naming each failure (a checksum mismatch first, it is not the network)."""
    if mismatch is not None:
        others = "; ".join(failures)
        raise ChecksumError(
            dest,
            *mismatch,
            hint=f"the download was deleted; the mirror serves a different file ({others}): try again later, "
            "or fetch it yourself and pass --archives DIR",
        )
    kept = f"; the partial file {part} resumes next time" if part.exists() else ""
    if len(failures) > 1 and all(failure.endswith(_HOST_NOT_FOUND) for failure in failures):
        failures = [f"all {len(failures)} URLs failed: {_HOST_NOT_FOUND}"]  # offline: say it once
    raise RefineError(
        f"could not download {dest.name}: " + "; ".join(failures),
        hint=f"check the network, or fetch it yourself and pass --archives DIR{kept}",
    )


def check_download_space(sources: list[Source], downloads_dir: Path) -> None:
    """Refuse before the first byte when the sources still to download (manifest sizes) do not fit."""
    needed = 0
    names = []
    for source in sources:
        path = Path(downloads_dir) / source.file
        if source.size is None or path.is_file():
            continue
        part = path.with_name(path.name + ".part")
        needed += max(0, source.size - (part.stat().st_size if part.is_file() else 0))
        names.append(source.file)
    if needed:
        what = f"download {', '.join(names)}" if len(names) <= 3 else f"download {len(names)} files"
        ensure_free_space(
            downloads_dir, needed, what, hint="free some space there, choose another --root, or pass --archives"
        )


def _stderr_warning(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def missing_archives_error(missing: list[Source], archives_dir: Path, homepage: str = "") -> RefineError:
    """One error that lists every file the user still has to fetch, with where to get it."""
    parts = []
    for source in missing:
        where = " or ".join(source.urls) or homepage or "the dataset's homepage"
        login = " (needs a login)" if source.login else ""
        parts.append(f"{source.file} from {where}{login}")
    return RefineError(
        f"missing in {archives_dir}: " + "; ".join(parts),
        hint=f"download them into {archives_dir}, or drop --archives to let refine download what it can",
    )


class Fetched(NamedTuple):
    """A local copy of a source; `trusted` when it differs from the manifest and --trust-archives took it."""

    path: Path
    trusted: bool = False


def fetch_source(
    source: Source,
    downloads_dir: Path,
    archives_dir: Path | None,
    trust_archives: bool,
    progress: bool = True,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    notify: Callable[[str], None] | None = None,
) -> Fetched:
    """A verified local copy of `source`: from `archives_dir` if given (never downloads), else downloaded.

    `trust_archives` accepts a present file whose size/checksum differs (a re-packed copy), with a
    loud warning (through `notify`, stderr by default); it never applies to files refine downloads itself.
    """
    warn = notify or _stderr_warning
    if source.unverified:
        warn(f"{source.file} has no published checksum; only its size can be checked ({source.note or 'see manifest'})")
    downloads_dir = Path(downloads_dir)
    downloads_dir.mkdir(parents=True, exist_ok=True)
    if archives_dir is not None:
        path = Path(archives_dir) / source.file
        if not path.is_file():
            raise missing_archives_error([source], Path(archives_dir))
    else:
        path = downloads_dir / source.file
    if path.is_file():
        try:
            verify_file(path, source, progress=progress, cache_dir=downloads_dir)
        except ChecksumError as error:
            if not trust_archives:
                raise
            warn(f"--trust-archives: using {path} although its {error.one_line()}")
            return Fetched(path, trusted=True)
        return Fetched(path)
    if source.login or not source.urls:
        raise RefineError(
            f"{source.file} needs a login to download ({source.note or 'see the dataset homepage'})",
            hint=f"download it yourself into {downloads_dir} or pass --archives DIR",
        )
    return Fetched(
        download(
            source.urls,
            path,
            expected_size=source.size,
            retries=retries,
            backoff=backoff,
            checksums=source.checksums(),
            progress=progress,
        )
    )
