"""Downloads against a loopback server: resume, retries, mirrors, checksums, user-supplied archives."""

from __future__ import annotations

import errno
import hashlib
import shutil
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock

from refine_cli.data.acquire import download as download_module
from refine_cli.data.acquire.download import ChecksumError, check_download_space, download, fetch_source, verify_file
from refine_cli.data.acquire.limits import StallRules
from refine_cli.data.acquire.manifest import Source
from refine_cli.errors import RefineError
from refine_cli.fileio import DiskFullError
from tests.support.http_server import Fault, LoopbackServer

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: several read chunks


def _source(server: LoopbackServer, *paths: str, data: bytes = PAYLOAD, **kw) -> Source:
    return Source(
        key="archive",
        file="archive.tar",
        urls=[server.url(p) for p in paths],
        size=len(data),
        md5=hashlib.md5(data).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        **kw,
    )


def _fetch(source: Source, tmp_path: Path, archives: Path | None = None, trust: bool = False, **kw) -> Path:
    return fetch_source(source, tmp_path / "downloads", archives, trust, progress=False, backoff=0.01, **kw).path


def test_fresh_download_verifies_and_renames(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["a.tar"] = PAYLOAD
    path = _fetch(_source(http_server, "a.tar"), tmp_path)
    assert path == tmp_path / "downloads" / "archive.tar"
    assert path.read_bytes() == PAYLOAD
    assert not list(path.parent.glob("*.part"))
    # a second fetch uses the verified file (and its cached verification) without any request
    count = len(http_server.requests)
    assert _fetch(_source(http_server, "a.tar"), tmp_path) == path
    assert len(http_server.requests) == count


def test_resume_after_cut_uses_range(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["a.tar"] = PAYLOAD
    http_server.faults["a.tar"] = Fault(cut_after=300_000)
    path = _fetch(_source(http_server, "a.tar"), tmp_path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(PAYLOAD).hexdigest()
    ranges = [r.range for r in http_server.requests_for("a.tar")]
    assert ranges[0] is None and ranges[1] == "bytes=300000-"
    assert http_server.requests_for("a.tar")[1].status == 206


def test_resume_of_a_part_left_by_an_earlier_run(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["a.tar"] = PAYLOAD
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "archive.tar.part").write_bytes(PAYLOAD[:123_456])
    path = _fetch(_source(http_server, "a.tar"), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert [r.range for r in http_server.requests_for("a.tar")] == ["bytes=123456-"]


def test_server_ignoring_range_restarts_cleanly(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["a.tar"] = PAYLOAD
    http_server.faults["a.tar"] = Fault(cut_after=1000, ignore_range=True)
    path = _fetch(_source(http_server, "a.tar"), tmp_path)
    assert path.read_bytes() == PAYLOAD


def test_checksum_mismatch_names_file_and_both_sums(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["a.tar"] = PAYLOAD
    http_server.faults["a.tar"] = Fault(corrupt=True)
    source = _source(http_server, "a.tar")
    with pytest.raises(ChecksumError) as info:
        _fetch(source, tmp_path)
    text = info.value.one_line()
    assert "archive.tar" in text and source.sha256 in text
    assert hashlib.sha256(bytes((b + 1) % 256 for b in PAYLOAD)).hexdigest() in text
    assert not any((tmp_path / "downloads").glob("archive.tar*"))


def test_mirror_fallback_after_404(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["b.tar"] = PAYLOAD
    path = _fetch(_source(http_server, "missing.tar", "b.tar"), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert [r.status for r in http_server.requests_for("missing.tar")] == [404]  # no retries on a 404


def test_transient_503_is_retried(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["a.tar"] = PAYLOAD
    http_server.faults["a.tar"] = Fault(status=503, fail_times=2)
    assert _fetch(_source(http_server, "a.tar"), tmp_path).read_bytes() == PAYLOAD
    assert [r.status for r in http_server.requests_for("a.tar")] == [503, 503, 200]


def test_all_mirrors_failing_lists_each(http_server: LoopbackServer, tmp_path: Path) -> None:
    with pytest.raises(RefineError) as info:
        _fetch(_source(http_server, "x.tar", "y.tar"), tmp_path)
    assert "x.tar: HTTP 404" in info.value.message and "y.tar: HTTP 404" in info.value.message
    assert "--archives" in (info.value.hint or "")


def test_wrong_size_on_server_is_rejected(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["a.tar"] = PAYLOAD[:-1]
    with pytest.raises(RefineError, match="manifest expects"):
        _fetch(_source(http_server, "a.tar"), tmp_path)


def test_archives_dir_present_and_missing(http_server: LoopbackServer, tmp_path: Path) -> None:
    archives = tmp_path / "mine"
    archives.mkdir()
    source = _source(http_server, "a.tar")
    with pytest.raises(RefineError) as info:
        _fetch(source, tmp_path, archives=archives)
    assert "archive.tar" in info.value.message and source.urls[0] in info.value.message
    (archives / "archive.tar").write_bytes(PAYLOAD)
    assert _fetch(source, tmp_path, archives=archives) == archives / "archive.tar"
    assert http_server.requests == []  # --archives never downloads


def test_trust_archives_accepts_repacked_copy_loudly(http_server: LoopbackServer, tmp_path: Path) -> None:
    archives = tmp_path / "mine"
    archives.mkdir()
    (archives / "archive.tar").write_bytes(PAYLOAD[:-10] + b"0123456789")
    source = _source(http_server, "a.tar")
    with pytest.raises(ChecksumError) as info:
        _fetch(source, tmp_path, archives=archives)
    assert "--trust-archives" in info.value.one_line()
    notes: list[str] = []
    path = _fetch(source, tmp_path, archives=archives, trust=True, notify=notes.append)
    assert path == archives / "archive.tar"
    assert len(notes) == 1 and "--trust-archives" in notes[0] and "mismatch" in notes[0]
    fetched = fetch_source(source, tmp_path / "downloads", archives, True, progress=False, notify=notes.append)
    assert fetched.trusted  # the caller records what was really used, not the manifest's sums
    (archives / "archive.tar").write_bytes(PAYLOAD)
    assert not fetch_source(source, tmp_path / "downloads", archives, True, progress=False).trusted


def test_login_source_without_file_says_how(tmp_path: Path) -> None:
    source = Source(key="a", file="gtFine.zip", urls=[], md5="0" * 32, login=True, note="register at example.org")
    with pytest.raises(RefineError, match="needs a login"):
        _fetch(source, tmp_path)


def test_verify_file_size_first(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    with pytest.raises(ChecksumError, match="size mismatch"):
        verify_file(path, Source(key="f", file="f.bin", urls=["http://x/f"], size=4, md5="0" * 32))
    verify_file(path, Source(key="f", file="f.bin", urls=["http://x/f"], size=3, md5=hashlib.md5(b"abc").hexdigest()))


def test_download_plain_url(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["small.txt"] = b"hello"
    dest = download(http_server.url("small.txt"), tmp_path / "small.txt", progress=False, backoff=0.01)
    assert dest.read_bytes() == b"hello"


def test_a_wrong_mirror_keeps_the_partial_file_for_the_next(http_server: LoopbackServer, tmp_path: Path) -> None:
    """A mirror serving another file (e.g. a firewall's HTML page) must not throw away good resume bytes."""
    http_server.files["blocked.tar"] = b"<html>access blocked by firewall policy</html>"
    http_server.files["a.tar"] = PAYLOAD
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "archive.tar.part").write_bytes(PAYLOAD[:200_000])
    path = _fetch(_source(http_server, "blocked.tar", "a.tar"), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert [r.range for r in http_server.requests_for("a.tar")] == ["bytes=200000-"]


def test_unknown_hosts_are_not_retried_and_reported_once(tmp_path: Path) -> None:
    """Offline: every mirror fails at name resolution at once, and the error says so in one short line."""
    source = Source(
        key="archive", file="archive.tar", urls=["http://no-such-host.invalid/a.tar", "http://also.invalid/a.tar"],
        size=len(PAYLOAD), sha256=hashlib.sha256(PAYLOAD).hexdigest(),
    )  # fmt: skip
    with pytest.raises(RefineError) as info:
        fetch_source(source, tmp_path, None, False, progress=False, backoff=5.0)  # a retry would sleep 5 s
    assert "all 2 URLs failed: host not found" in info.value.message


# ------------------------------------------------------------------ stalls, slow mirrors, full disks

TINY_RULES = StallRules(stall_seconds=0.3, min_rate=200_000, window=0.4)  # 200 KB/s over 0.4 s


@pytest.fixture
def tiny_stall_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same tiny thresholds through the environment, as `refine prepare --stall-timeout` sets them."""
    monkeypatch.setenv("REFINE_STALL_TIMEOUT", "0.3")
    monkeypatch.setenv("REFINE_MIN_RATE", "200")
    monkeypatch.setenv("REFINE_RATE_WINDOW", "0.4")


@pytest.mark.parametrize(
    "fault", [Fault(stall_after=0), Fault(stall_after=5000), Fault(trickle=20_000)], ids=["silent", "stuck", "trickle"]
)
def test_a_stalling_mirror_is_retried_once_then_the_next_is_used(
    http_server: LoopbackServer, tmp_path: Path, tiny_stall_env: None, fault: Fault
) -> None:
    http_server.files["dead.tar"] = PAYLOAD
    http_server.faults["dead.tar"] = fault
    http_server.files["b.tar"] = PAYLOAD
    started = time.monotonic()
    path = _fetch(_source(http_server, "dead.tar", "b.tar"), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert len(http_server.requests_for("dead.tar")) == 2  # once more, not 4 attempts
    assert time.monotonic() - started < 4


def test_a_stall_mid_file_resumes_with_range(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["a.tar"] = PAYLOAD
    http_server.faults["a.tar"] = Fault(stall_after=300_000, slow_times=1)
    dest = download(http_server.url("a.tar"), tmp_path / "a.tar", len(PAYLOAD), backoff=0.01, progress=False,
                    checksums={"sha256": hashlib.sha256(PAYLOAD).hexdigest()}, rules=TINY_RULES)  # fmt: skip
    assert dest.read_bytes() == PAYLOAD
    assert [r.range for r in http_server.requests_for("a.tar")] == [None, "bytes=300000-"]


def test_all_mirrors_stalling_is_one_error_naming_each(http_server: LoopbackServer, tmp_path: Path) -> None:
    for name, fault in (("x.tar", Fault(stall_after=0)), ("y.tar", Fault(trickle=20_000))):
        http_server.files[name] = PAYLOAD
        http_server.faults[name] = fault
    started = time.monotonic()
    with pytest.raises(RefineError) as info:
        download([http_server.url("x.tar"), http_server.url("y.tar")], tmp_path / "a.tar", progress=False,
                 backoff=0.01, rules=TINY_RULES)  # fmt: skip
    message = info.value.message
    assert "x.tar: stalled: no data for 0.3 s (2 times)" in message
    assert "y.tar: stalled: too slow" in message and "the minimum is 200 KB/s" in message
    assert time.monotonic() - started < 4
    assert "resumes next time" in (info.value.hint or "")  # what trickled in is kept for a rerun


def test_stall_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert StallRules.from_env() == StallRules(15.0, 10_000.0, 20.0)
    monkeypatch.setenv("REFINE_MIN_RATE", "0")
    monkeypatch.setenv("REFINE_STALL_TIMEOUT", "5")
    assert StallRules.from_env() == StallRules(5.0, 0.0, 20.0)
    for word in ("soon", "nan", "inf"):
        monkeypatch.setenv("REFINE_STALL_TIMEOUT", word)
        with pytest.raises(RefineError, match=f"REFINE_STALL_TIMEOUT='{word}' is not a number"):
            StallRules.from_env()


def test_free_space_is_checked_before_the_first_byte(
    http_server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_server.files["a.tar"] = PAYLOAD
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    source = _source(http_server, "a.tar")
    with pytest.raises(DiskFullError) as info:
        _fetch(source, tmp_path)
    assert info.value.one_line().startswith(
        f"not enough free space in {tmp_path / 'downloads'} to download archive.tar: needs 1.0 MiB, 1000 B free"
    )
    assert http_server.requests == []
    with pytest.raises(DiskFullError, match="to download archive.tar, b.tar: needs 2.0 MiB"):
        check_download_space([source, Source("b", "b.tar", source.urls, len(PAYLOAD), md5="0" * 32)], tmp_path)


def test_a_full_disk_stops_the_download_at_once(
    http_server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC is not a network error: no retry, no next mirror, one line with what is needed where."""
    http_server.files["a.tar"] = PAYLOAD

    class FullDisk:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.file = open(*args, **kwargs)  # noqa: SIM115 - closed in __exit__

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download_module, "open", FullDisk, raising=False)
    with pytest.raises(DiskFullError) as info:
        _fetch(_source(http_server, "a.tar", "a.tar"), tmp_path)
    assert info.value.one_line().startswith(f"no space left in {tmp_path / 'downloads'} to download archive.tar")
    assert "needs 1.0 MiB" in info.value.message
    assert len(http_server.requests) == 1


def test_a_second_download_of_one_file_waits_and_takes_the_first_ones(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    """Two `refine prepare` on one root must not append to one .part file: the second waits, then reuses."""
    http_server.files["a.tar"] = PAYLOAD
    dest = tmp_path / "archive.tar"
    sums = {"sha256": hashlib.sha256(PAYLOAD).hexdigest()}
    results: list[Path] = []
    with FileLock(str(tmp_path / ".archive.tar.lock")):  # "the first process" is downloading
        second = threading.Thread(
            target=lambda: results.append(
                download(http_server.url("a.tar"), dest, len(PAYLOAD), checksums=sums, progress=False)
            )  # fmt: skip
        )
        second.start()
        time.sleep(0.3)
        assert second.is_alive() and http_server.requests == []
        dest.write_bytes(PAYLOAD)  # the first one finishes
    second.join(5)
    assert results == [dest] and http_server.requests == []  # verified and taken, not downloaded again
