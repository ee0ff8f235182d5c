"""Dataset manifests: where each source archive comes from and how to recognise a good copy.

One TOML file per dataset in the repository's `data_manifests/` (schema: data_manifests/README.md).
`--manifest FILE` replaces the packaged one, e.g. to add a mirror. Validation is strict and names
the file and field, because a typo in a checksum or key should fail before a 20 GB download.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refine_cli.errors import RefineError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

_PACKAGE_DIR = Path(__file__).resolve().parents[2]  # refine_cli/
# A source checkout (editable install) keeps manifests at the repository top level; a built wheel
# carries them inside the package (refine_cli/manifests, see pyproject package-data).
MANIFEST_DIRS = (_PACKAGE_DIR.parent / "data_manifests", _PACKAGE_DIR / "manifests")

_HEX = {"md5": 32, "sha1": 40, "sha256": 64}
_SOURCE_FIELDS = {
    *("key", "file", "urls", "size", "md5", "sha1", "sha256", "login", "extract", "optional", "note"),
    "unverified",  # true = no checksum was ever published for this file (e.g. pascal_person_part.zip)
    "approx_size",  # bytes, roughly: only shown (`prepare --list`, free-space checks never rely on it)
}
_TOP_FIELDS = {"name", "title", "homepage", "licence", "sources", "splits", "notes"}
_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass
class Source:
    """One downloadable file of a dataset (archive or list) and the facts needed to verify it."""

    key: str
    file: str
    urls: list[str]
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    login: bool = False
    extract: bool = True
    optional: bool = False
    note: str = ""
    sha1: str | None = None
    unverified: bool = False  # no checksum was ever published: only the size (if known) can be checked
    approx_size: int | None = None  # a published rough size where the exact byte count is unknown (display only)

    def checksums(self) -> dict[str, str]:
        """The known sums by algorithm name, strongest first."""
        sums = {"sha256": self.sha256, "sha1": self.sha1, "md5": self.md5}
        return {algo: value for algo, value in sums.items() if value}

    def to_record(self) -> dict[str, Any]:
        """What meta.json records about the source a dataset was built from."""
        return {"key": self.key, "file": self.file, "size": self.size, **self.checksums()}


@dataclass
class Manifest:
    """A dataset's sources, terms and expected split counts."""

    name: str
    title: str
    homepage: str
    licence: str
    sources: list[Source]
    splits: dict[str, int] = field(default_factory=dict)
    notes: str = ""
    path: Path | None = None

    def source(self, key: str) -> Source:
        for source in self.sources:
            if source.key == key:
                return source
        known = ", ".join(s.key for s in self.sources)
        raise RefineError(f"manifest {self.name!r} has no source {key!r}", hint=f"its sources are: {known}")


def list_manifests() -> list[str]:
    """Names of the packaged manifests."""
    names: set[str] = set()
    for folder in MANIFEST_DIRS:
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.toml"))
    return sorted(names)


def _packaged_path(name: str) -> Path | None:
    for folder in MANIFEST_DIRS:
        candidate = folder / f"{name}.toml"
        if candidate.is_file():
            return candidate
    return None


def load_manifest(name_or_path: str | Path) -> Manifest:
    """Load a packaged manifest by name (e.g. 'voc') or any manifest file by path, validated."""
    text = str(name_or_path)
    is_path = isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text or "\\" in text
    if is_path:
        path = Path(name_or_path).expanduser()
        if path.is_dir():
            raise RefineError(f"manifest {path} is a folder, not a file", hint="give the path of a .toml manifest")
        if not path.is_file():
            raise RefineError(f"manifest file {path} does not exist")
    else:
        found = _packaged_path(text)
        if found is None:
            known = ", ".join(list_manifests()) or "none"
            raise RefineError(f"no packaged manifest named {text!r}", hint=f"known manifests: {known}")
        path = found
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise RefineError(f"cannot read manifest {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise RefineError(f"manifest {path} is not valid TOML: {error}") from None
    return parse_manifest(data, path)


def parse_manifest(data: dict[str, Any], path: Path) -> Manifest:
    """Validate manifest contents; every problem names the file and the field."""

    def fail(field_name: str, problem: str) -> RefineError:
        return RefineError(f"manifest {path}: field {field_name!r} {problem}", hint="see data_manifests/README.md")

    unknown = sorted(set(data) - _TOP_FIELDS)
    if unknown:
        raise fail(unknown[0], "is not a manifest field")
    for key in ("name", "title"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise fail(key, "must be a non-empty string")
    for key in ("homepage", "licence", "notes"):
        if not isinstance(data.get(key, ""), str):
            raise fail(key, "must be a string")
    splits = data.get("splits", {})
    if not isinstance(splits, dict):
        raise fail("splits", "must be a table of split = count")
    for split, count in splits.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise fail(f"splits.{split}", "must be a non-negative integer")
    raw_sources = data.get("sources")
    if not isinstance(raw_sources, list) or not raw_sources:
        raise fail("sources", "must be a non-empty array of [[sources]] tables")
    sources = [_parse_source(raw, index, fail) for index, raw in enumerate(raw_sources)]
    keys = [s.key for s in sources]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise fail(f"sources.{duplicates[0]}", "is defined more than once")
    return Manifest(
        name=data["name"],
        title=data["title"],
        homepage=data.get("homepage", ""),
        licence=data.get("licence", ""),
        sources=sources,
        splits=dict(splits),
        notes=data.get("notes", ""),
        path=path,
    )


def _parse_source(raw: Any, index: int, fail: Any) -> Source:
    where = f"sources[{index}]"
    if not isinstance(raw, dict):
        raise fail(where, "must be a table")
    unknown = sorted(set(raw) - _SOURCE_FIELDS)
    if unknown:
        raise fail(f"{where}.{unknown[0]}", "is not a source field")
    key = raw.get("key")
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise fail(f"{where}.key", "must be a lower-case identifier like 'trainval'")
    where = f"sources.{key}"
    name = raw.get("file")
    if not isinstance(name, str) or not name or name != Path(name).name or name in (".", ".."):
        raise fail(f"{where}.file", "must be a plain file name (no folders)")
    urls = raw.get("urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) and "://" in u for u in urls):
        raise fail(f"{where}.urls", "must be a list of URLs")
    login = raw.get("login", False)
    for flag in ("login", "extract", "optional", "unverified"):
        if not isinstance(raw.get(flag, False), bool):
            raise fail(f"{where}.{flag}", "must be true or false")
    if not urls and not login:
        raise fail(f"{where}.urls", "is empty; give at least one URL or set login = true")
    size, approx_size = raw.get("size"), raw.get("approx_size")
    for field_name, value in (("size", size), ("approx_size", approx_size)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise fail(f"{where}.{field_name}", "must be a positive integer (bytes)")
    sums: dict[str, str | None] = {}
    for algo, length in _HEX.items():
        value = raw.get(algo)
        if value is not None and (not isinstance(value, str) or not re.fullmatch(f"[0-9a-fA-F]{{{length}}}", value)):
            raise fail(f"{where}.{algo}", f"must be {length} hexadecimal digits")
        sums[algo] = value.lower() if value else None
    if not any(sums.values()) and not raw.get("unverified", False):
        raise fail(where, "has no checksum; give md5, sha1 or sha256 (or unverified = true if none was ever published)")
    note = raw.get("note", "")
    if not isinstance(note, str):
        raise fail(f"{where}.note", "must be a string")
    return Source(
        key=key,
        file=name,
        urls=list(urls),
        size=size,
        md5=sums["md5"],
        sha256=sums["sha256"],
        login=login,
        extract=raw.get("extract", True),
        optional=raw.get("optional", False),
        unverified=raw.get("unverified", False),
        note=note,
        sha1=sums["sha1"],
        approx_size=approx_size,
    )
