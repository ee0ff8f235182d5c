"""Manifests: every packaged one validates and fits its converter; schema errors name file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from refine_cli.data.acquire.manifest import MANIFEST_DIRS, list_manifests, load_manifest
from refine_cli.data.convert.registry import get_converter, list_converters
from refine_cli.errors import RefineError

GOOD = """
name = "demo"
title = "Demo"
licence = "CC-BY"
[splits]
train = 3
[[sources]]
key = "main"
file = "demo.tar"
urls = ["https://a.example/demo.tar", "https://b.example/demo.tar"]
size = 10
sha256 = "{sha}"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "demo.toml"
    path.write_text(text)
    return path


def test_packaged_manifests_validate() -> None:
    names = list_manifests()
    assert {"voc", "sbd", "coco"} <= set(names)
    for name in names:
        manifest = load_manifest(name)
        assert manifest.sources and all(s.checksums() or s.unverified for s in manifest.sources)


def test_packaged_copy_for_wheels_matches() -> None:
    """refine_cli/manifests (what a wheel carries) must show the same files as data_manifests/."""
    repo, packaged = MANIFEST_DIRS
    assert sorted(p.name for p in packaged.glob("*.toml")) == sorted(p.name for p in repo.glob("*.toml"))


def _shipped_converters() -> list[str]:
    """Registered converters that ship with refine (tests may register their own, e.g. 'tinytest')."""
    return [n for n in list_converters() if type(get_converter(n)).__module__.startswith("refine_cli.")]


@pytest.mark.parametrize("name", _shipped_converters())
def test_every_converter_has_its_manifest_and_sources(name: str) -> None:
    converter = get_converter(name)
    if not converter.manifest:  # local files (prepare custom): no manifest, nothing to fetch
        assert converter.required_sources({}) == []
        return
    manifest = load_manifest(converter.manifest)
    keys = {s.key for s in manifest.sources}
    for options in ({}, {"aug": True}):
        assert set(converter.required_sources({**options, "manifest": manifest})) <= keys


def test_load_by_path(tmp_path: Path) -> None:
    manifest = load_manifest(_write(tmp_path, GOOD.format(sha="a" * 64)))
    source = manifest.source("main")
    assert source.urls[1] == "https://b.example/demo.tar" and source.size == 10 and not source.login
    assert source.extract and manifest.splits == {"train": 3}
    assert source.to_record() == {"key": "main", "file": "demo.tar", "size": 10, "sha256": "a" * 64}
    with pytest.raises(RefineError, match="no source 'other'"):
        manifest.source("other")


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda t: t.replace('sha256 = "' + "a" * 64 + '"', 'sha256 = "xyz"'), "sources.main.sha256"),
        (lambda t: t.replace('sha256 = "' + "a" * 64 + '"', ""), "sources.main"),
        (lambda t: t.replace('file = "demo.tar"', 'file = "../demo.tar"'), "sources.main.file"),
        (lambda t: t.replace("size = 10", "size = -1"), "sources.main.size"),
        (lambda t: t.replace("size = 10", 'approx_size = "1 GB"'), "sources.main.approx_size"),
        (lambda t: t.replace("train = 3", 'train = "3"'), "splits.train"),
        (lambda t: t.replace('title = "Demo"', 'title = "Demo"\ncolour = 1'), "colour"),
        (lambda t: t.replace('key = "main"', 'key = "main"\nmirror = 1'), "sources[0].mirror"),
        (
            lambda t: t.replace('urls = ["https://a.example/demo.tar", "https://b.example/demo.tar"]', "urls = []"),
            "sources.main.urls",
        ),  # fmt: skip
    ],
)
def test_schema_errors_name_file_and_field(tmp_path: Path, edit, field: str) -> None:  # noqa: ANN001
    path = _write(tmp_path, edit(GOOD.format(sha="a" * 64)))
    with pytest.raises(RefineError) as info:
        load_manifest(path)
    assert str(path) in info.value.message and f"'{field}'" in info.value.message


def test_unverified_source_needs_the_flag(tmp_path: Path) -> None:
    text = GOOD.format(sha="a" * 64).replace('sha256 = "' + "a" * 64 + '"', "unverified = true")
    assert load_manifest(_write(tmp_path, text)).sources[0].unverified


def test_login_source_may_have_no_urls(tmp_path: Path) -> None:
    text = GOOD.format(sha="a" * 64).replace(
        'urls = ["https://a.example/demo.tar", "https://b.example/demo.tar"]', "urls = []\nlogin = true"
    )
    assert load_manifest(_write(tmp_path, text)).sources[0].login


def test_unknown_name_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(RefineError, match="no packaged manifest named 'nope'") as info:
        load_manifest("nope")
    assert "voc" in (info.value.hint or "")
    with pytest.raises(RefineError, match="not valid TOML"):
        load_manifest(_write(tmp_path, "name = "))
    with pytest.raises(RefineError, match="does not exist"):
        load_manifest(tmp_path / "missing.toml")


def test_manifest_that_is_a_folder_is_called_a_folder(tmp_path: Path) -> None:
    (tmp_path / "voc.toml").mkdir()
    with pytest.raises(RefineError, match="is a folder, not a file"):
        load_manifest(tmp_path / "voc.toml")
