"""What a `prepare` run reads: fetch and extract a manifest's sources, and name every path up front.

`prepare_paths` mirrors `fetch_sources` without doing any work, so the output guards can refuse a
dataset folder or --json that would land on an archive before the first byte is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refine_cli.data.acquire.download import check_download_space, fetch_source, missing_archives_error
from refine_cli.data.acquire.extract import extract_archive
from refine_cli.data.acquire.manifest import Manifest, load_manifest
from refine_cli.data.acquire.verify import measured_sha256
from refine_cli.data.convert.registry import get_converter
from refine_cli.errors import RefineError

_ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")


def _archive_stem(file_name: str) -> str:
    for suffix in _ARCHIVE_SUFFIXES:
        if file_name.lower().endswith(suffix):
            return file_name[: -len(suffix)]
    return file_name


def fetch_sources(
    manifest: Manifest,
    keys: list[str],
    root: Path,
    archives: Path | None,
    trust_archives: bool,
    progress: bool,
    notify: Callable[[str], None] | None = None,
) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    """Fetch and extract the named sources.

    Returns key -> extracted folder (archives) or file (everything else), and the meta.json `sources`
    records. A source with no published checksum (`unverified = true`) is recorded with the sha256 of
    the file actually used and `"unverified": true`, so the dataset's provenance is pinned all the same.
    """
    sources = [manifest.source(key) for key in keys]
    if archives is not None:
        if not Path(archives).is_dir():
            raise RefineError(f"--archives {archives} is not a folder")
        missing = [s for s in sources if not (Path(archives) / s.file).is_file()]
        if missing:  # one error that lists everything, before any work starts
            raise missing_archives_error(missing, Path(archives), manifest.homepage)
    downloads = root / "downloads"
    if archives is None:  # everything that still has to come must fit, before the first byte
        check_download_space(sources, downloads)
    paths: dict[str, Path] = {}
    records: list[dict[str, Any]] = []
    for source in sources:
        local, trusted = fetch_source(source, downloads, archives, trust_archives, progress=progress, notify=notify)
        record = source.to_record()
        if source.unverified:
            record.update(sha256=measured_sha256(local, progress, cache_dir=downloads), unverified=True)
        elif trusted:
            # a re-packed copy accepted with --trust-archives: record what was really used, not the manifest
            digest = measured_sha256(local, progress, cache_dir=downloads)
            record = {"key": source.key, "file": source.file, "size": local.stat().st_size, "sha256": digest}
            record["trusted"] = True
        records.append(record)
        if source.extract:
            local = extract_archive(local, downloads / "extracted" / _archive_stem(source.file), progress=progress)
        paths[source.key] = local
    return paths, records


@dataclass
class PreparePaths:
    """Where a prepare run writes (its dataset folder) and what it reads, known before any work starts."""

    dataset: Path
    sources: list[Path]  # the archives/files it reads, and the folders they are extracted to


def prepare_paths(
    converter_name: str,
    root: Path,
    options: dict[str, Any],
    archives: Path | None = None,
    manifest: str | Path | None = None,
) -> PreparePaths:
    """The paths `prepare_dataset` will write and read with these arguments (mirrors `fetch_sources`)."""
    converter = get_converter(converter_name)
    if not converter.manifest and manifest is None:
        dataset = Path(root).expanduser() / converter.dataset_name(options)
        return PreparePaths(dataset=dataset, sources=converter.local_inputs(options))
    loaded = load_manifest(manifest if manifest is not None else converter.manifest)
    downloads = Path(root).expanduser() / "downloads"
    sources: list[Path] = []
    for key in converter.required_sources({**options, "manifest": loaded}):
        source = loaded.source(key)
        sources.append((Path(archives) if archives is not None else downloads) / source.file)
        if source.extract:
            sources.append(downloads / "extracted" / _archive_stem(source.file))
    return PreparePaths(dataset=Path(root).expanduser() / converter.name, sources=sources)
