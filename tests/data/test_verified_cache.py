"""The "already verified" cache of source archives: reused only for the very file and sums it vouches for.

`prepare` hashes a multi-GB archive once and remembers the result in downloads/.verified-<file>.json,
keyed by the file's path, size and mtime and by the checksums it was verified against. A marker that
does not match all of them must never let an unverified file through.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from refine_cli.data.acquire import verify
from refine_cli.data.acquire.download import ChecksumError, fetch_source
from refine_cli.data.acquire.manifest import Source

PAYLOAD = bytes(range(256)) * 64
OTHER = PAYLOAD[::-1]  # same size, other bytes


def _source(data: bytes = PAYLOAD) -> Source:
    return Source(key="a", file="a.tar", urls=["http://127.0.0.1:9/a.tar"], size=len(data),
                  sha256=hashlib.sha256(data).hexdigest())  # fmt: skip


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file refine hashes, in order."""
    seen: list[Path] = []
    real = verify.hash_file

    def counting(path: Path, algos: list[str], progress: bool = False) -> dict[str, str]:
        seen.append(Path(path))
        return real(path, algos, progress)

    monkeypatch.setattr(verify, "hash_file", counting)
    return seen


def _fetch(source: Source, downloads: Path, archives: Path | None = None) -> Path:
    return fetch_source(source, downloads, archives, False, progress=False, notify=lambda _: None).path


def test_a_verified_archive_is_reused_without_hashing_until_it_changes(tmp_path: Path, hashes: list[Path]) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    archive = downloads / "a.tar"
    archive.write_bytes(PAYLOAD)
    assert _fetch(_source(), downloads) == archive
    assert _fetch(_source(), downloads) == archive
    assert hashes == [archive]  # the second run trusted the marker
    archive.write_bytes(OTHER)  # same name and size, other content
    os.utime(archive, ns=(1, 1))  # a rewrite changes the mtime (set explicitly: coarse clocks may not tick)
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        _fetch(_source(), downloads)
    assert hashes == [archive, archive]


def test_a_marker_for_other_checksums_is_not_trusted(tmp_path: Path, hashes: list[Path]) -> None:
    """The manifest now publishes another sum (e.g. a re-released archive): the old verification is void."""
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "a.tar").write_bytes(PAYLOAD)
    _fetch(_source(), downloads)
    republished = _source(OTHER)  # same file name and size, the other content's sha256
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        _fetch(republished, downloads)
    assert len(hashes) == 2


def test_a_marker_for_another_copy_is_not_trusted(tmp_path: Path, hashes: list[Path]) -> None:
    """--archives DIR holds a different a.tar with the same size and mtime as the verified download."""
    downloads, archives = tmp_path / "downloads", tmp_path / "mine"
    downloads.mkdir()
    archives.mkdir()
    (downloads / "a.tar").write_bytes(PAYLOAD)
    (archives / "a.tar").write_bytes(OTHER)
    for copy in (downloads / "a.tar", archives / "a.tar"):
        os.utime(copy, ns=(5_000_000_000, 5_000_000_000))
    _fetch(_source(), downloads)
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        _fetch(_source(), downloads, archives)
    assert hashes == [downloads / "a.tar", archives / "a.tar"]


def test_a_damaged_marker_means_hashing_again(tmp_path: Path, hashes: list[Path]) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "a.tar").write_bytes(PAYLOAD)
    _fetch(_source(), downloads)
    markers = list(downloads.glob(".verified-*"))
    assert len(markers) == 1
    markers[0].write_text("{not json")
    _fetch(_source(), downloads)
    assert len(hashes) == 2
