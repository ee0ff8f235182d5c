"""Is this local file the one the manifest describes? Size and checksums, hashed once per file version.

Successful checks are remembered beside the downloads (keyed by path, size and mtime), so multi-GB
archives are not hashed again on every `prepare` run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from refine_cli.data.acquire.manifest import Source
from refine_cli.errors import RefineError
from refine_cli.fileio import write_json_atomic

CHUNK = 1 << 20


class ChecksumError(RefineError):
    """A file whose size or checksum differs from the manifest."""

    def __init__(self, path: Path, what: str, expected: str, actual: str, hint: str) -> None:
        super().__init__(f"{what} mismatch for {path}: expected {expected}, got {actual}", hint=hint)
        self.path = path
        self.expected = expected
        self.actual = actual


def hash_file(path: Path, algos: list[str], progress: bool = False) -> dict[str, str]:
    """Hex digests of `path` for each algorithm, in one pass over the file."""
    hashers = {algo: hashlib.new(algo) for algo in algos}
    bar = byte_bar(path.stat().st_size, f"verify {path.name}", progress)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
            bar.update(len(chunk))
    bar.close()
    return {algo: hasher.hexdigest() for algo, hasher in hashers.items()}


def byte_bar(total: int | None, desc: str, enabled: bool):  # noqa: ANN202 - a tqdm instance
    """A tqdm bar counting bytes (hidden when not `enabled`)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=not enabled, leave=False)


def _compare_sums(path: Path, expected: dict[str, str], actual: dict[str, str], hint: str) -> None:
    for algo, want in expected.items():
        got = actual.get(algo)
        if got is not None and got.lower() != want.lower():
            raise ChecksumError(path, algo, want.lower(), got, hint)


def verify_file(path: Path, source: Source, progress: bool = False, cache_dir: Path | None = None) -> None:
    """Check size and checksums of `path` against the manifest; ChecksumError naming both values if they differ.

    A successful check is remembered in `cache_dir` (keyed by path, size and mtime) so multi-GB
    archives are hashed once, not on every `prepare` run.
    """
    size = path.stat().st_size
    hint = f"delete {path} and download it again (or pass --trust-archives if it is a re-packed copy you trust)"
    if source.size is not None and size != source.size:
        raise ChecksumError(path, "size", f"{source.size} bytes", f"{size} bytes", hint)
    expected = source.checksums()
    if not expected:
        return
    stamp = {"path": str(path.resolve()), "size": size, "mtime_ns": path.stat().st_mtime_ns, **expected}
    marker = cache_dir / f".verified-{source.file}.json" if cache_dir is not None else None
    if marker is not None and marker.is_file():
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == stamp:
                return
        except (OSError, ValueError):
            pass
    actual = hash_file(path, list(expected), progress=progress)
    _compare_sums(path, expected, actual, hint)
    if marker is not None:
        write_json_atomic(marker, stamp)


def measured_sha256(path: Path, progress: bool = False, cache_dir: Path | None = None) -> str:
    """sha256 of `path` as it is, for sources without a published sum: it pins what a dataset was built from.

    Remembered in `cache_dir` (keyed by path, size and mtime) like verify_file's markers, so a large
    archive is hashed once.
    """
    stat = path.stat()
    stamp = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    marker = cache_dir / f".sha256-{path.name}.json" if cache_dir is not None else None
    if marker is not None and marker.is_file():
        try:
            cached = json.loads(marker.read_text(encoding="utf-8"))
            if {key: cached.get(key) for key in stamp} == stamp and isinstance(cached.get("sha256"), str):
                return cached["sha256"]
        except (OSError, ValueError):
            pass
    digest = hash_file(path, ["sha256"], progress=progress)["sha256"]
    if marker is not None:
        write_json_atomic(marker, {**stamp, "sha256": digest})
    return digest
