"""The prepare pipeline end to end with a tiny test-only converter (never shipped).

Covers: download + extraction through the manifest, parallel conversion, resume after a crash,
intentional drops (SkipSample), bad samples with and without --skip-bad, option changes, CLI codes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from refine_cli.class_tables import voc_palette
from refine_cli.cli._options import JsonOpt
from refine_cli.cli._prepare_common import run_prepare
from refine_cli.cli.app import _RefineGroup, app
from refine_cli.data.acquire.download import measured_sha256
from refine_cli.data.convert.base import (
    ConvertedSample,
    Converter,
    DatasetSpec,
    Plan,
    SampleError,
    SkipSample,
    WorkItem,
)
from refine_cli.data.convert.pipeline import prepare_dataset
from refine_cli.data.convert.registry import register_converter
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.errors import RefineError
from tests.support.http_server import LoopbackServer

N = 12
SIZE = (16, 20)


@register_converter
class TinyConverter(Converter):
    """Archive `tiny.tar` holds tiny/img/<id>.png and tiny/lab/<id>.png; label value 9 means 'void'."""

    name = "tinytest"
    manifest = "unused"
    version = "1"

    def required_sources(self, options: dict[str, Any]) -> list[str]:
        return ["main"]

    def plan(self, sources: dict[str, Path], options: dict[str, Any]) -> Plan:
        base = sources["main"] / "tiny"
        ids = sorted(p.stem for p in (base / "img").glob("*.png"))
        items = [WorkItem(i, (str(base), options.get("crash_flag"))) for i in ids]
        spec = DatasetSpec("tiny", ["bg", "a", "b"], voc_palette(3), extra={"note": "test"})
        return Plan(spec, {"train": ids[:-3], "val": ids[-3:]}, items, skipped=[("readme.txt", "not an image")])

    @staticmethod
    def convert(item: WorkItem) -> ConvertedSample:
        base, crash_flag = Path(item.args[0]), item.args[1]
        if crash_flag and Path(crash_flag).exists() and item.sample_id == "s07":
            raise RuntimeError("simulated crash")
        if item.sample_id == "s03" and (base / "bad_s03").exists():
            raise SampleError(f"unreadable label {base / 'lab' / 's03.png'}")
        with Image.open(base / "lab" / f"{item.sample_id}.png") as image:
            label = np.array(image)
        if not label.any():
            raise SkipSample("no foreground pixels")
        label = np.where(label == 9, 255, label).astype(np.uint8)
        return ConvertedSample(label=label, image_src=base / "img" / f"{item.sample_id}.png")


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def make_archive(path: Path, bad_label_size: str | None = None, bad_sample: bool = False) -> bytes:
    """s00 has no foreground (dropped); others have classes 1/2 and a void band."""
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for i in range(N):
            sample_id = f"s{i:02d}"
            add(f"tiny/img/{sample_id}.png", _png(np.full((*SIZE, 3), i * 10, np.uint8)))
            label = np.zeros((5, 5) if sample_id == bad_label_size else SIZE, np.uint8)
            if i:
                label[:, : SIZE[1] // 2] = 1 + i % 2
                label[0] = 9
            add(f"tiny/lab/{sample_id}.png", _png(label))
        if bad_sample:
            add("tiny/bad_s03", b"")
    return path.read_bytes()


def write_manifest(path: Path, archive: bytes, urls: list[str]) -> Path:
    url_list = ", ".join(f'"{u}"' for u in urls)
    path.write_text(
        f'name = "tiny"\ntitle = "Tiny"\n[splits]\ntrain = {N - 3}\nval = 3\n'
        f'[[sources]]\nkey = "main"\nfile = "tiny.tar"\nurls = [{url_list}]\nsize = {len(archive)}\n'
        f'sha256 = "{hashlib.sha256(archive).hexdigest()}"\n'
    )
    return path


@pytest.fixture
def archives(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "archives"
    folder.mkdir()
    data = make_archive(folder / "tiny.tar")
    return folder, write_manifest(tmp_path / "tiny.toml", data, ["http://127.0.0.1:9/tiny.tar"])


def _prepare(tmp_path: Path, archives: tuple[Path, Path], **kw: Any):
    options = kw.pop("options", {})
    return prepare_dataset("tinytest", tmp_path / "data", options, archives=archives[0], manifest=archives[1], **kw)


def test_parallel_prepare_with_drops(tmp_path: Path, archives: tuple[Path, Path]) -> None:
    report = _prepare(tmp_path, archives, workers=2)
    assert report.check is not None and report.check.ok, report.check.problems
    assert report.converted == N - 1 and report.reused == 0
    assert ("s00", "no foreground pixels") in report.skipped and ("readme.txt", "not an image") in report.skipped
    assert report.splits == {"train": N - 4, "val": 3}
    assert report.notes == [f"split 'train' has {N - 4} samples, the manifest expects {N - 3}"]
    ds = UnifiedDataset(report.path)
    assert ds.meta.splits == report.splits and ds.meta.extra == {"note": "test"}
    assert ds.meta.sources[0]["file"] == "tiny.tar" and "sha256" in ds.meta.sources[0]
    label = ds.read_label("s01")
    assert label[0].tolist() == [255] * SIZE[1] and set(np.unique(label)) == {0, 2, 255}
    assert ds.image_path("s05").read_bytes() == _png(np.full((*SIZE, 3), 50, np.uint8))
    assert "s00" not in ds.split_ids("train")
    # idempotent: a rerun converts nothing, does not retry the dropped sample, and keeps the result
    again = _prepare(tmp_path, archives, workers=1)
    assert again.converted == 0 and again.reused == N - 1 and again.splits == report.splits
    assert not list((tmp_path / "data").rglob("*.part"))


def test_resume_after_crash(tmp_path: Path, archives: tuple[Path, Path]) -> None:
    flag = tmp_path / "crash"
    flag.touch()
    with pytest.raises(RuntimeError, match="simulated crash"):
        _prepare(tmp_path, archives, workers=1, options={"crash_flag": str(flag)})
    dataset = tmp_path / "data" / "tiny"
    assert not (dataset / "meta.json").exists()  # an unfinished dataset never looks complete
    written = sorted(p.stem for p in (dataset / "labels").glob("*.png"))
    assert written == [f"s{i:02d}" for i in range(1, 7)]
    (dataset / "labels" / ".s07.png.x1y2.part").write_bytes(b"half")  # as left by a killed process
    flag.unlink()
    report = _prepare(tmp_path, archives, workers=2, options={"crash_flag": str(flag)})
    assert report.reused == 6 and report.converted == N - 1 - 6 and report.check.ok
    assert not list(dataset.rglob("*.part")) and not list(dataset.rglob(".*.part"))


def test_bad_sample_stops_or_is_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "archives"
    folder.mkdir()
    data = make_archive(folder / "tiny.tar", bad_label_size="s05", bad_sample=True)
    manifest = write_manifest(tmp_path / "tiny.toml", data, ["http://127.0.0.1:9/tiny.tar"])
    with pytest.raises(RefineError) as info:
        prepare_dataset("tinytest", tmp_path / "data", {}, archives=folder, manifest=manifest, workers=2)
    assert "--skip-bad" in (info.value.hint or "")
    assert "s03" in info.value.message or "s05" in info.value.message
    report = prepare_dataset(
        "tinytest", tmp_path / "data", {}, archives=folder, manifest=manifest, workers=2, skip_bad=True
    )
    reasons = dict(report.skipped)
    assert "unreadable label" in reasons["s03"] and "label is 5x5 but image" in reasons["s05"]
    assert report.check.ok and report.splits["train"] == N - 3 - 3


def test_download_through_manifest(tmp_path: Path, http_server: LoopbackServer) -> None:
    data = make_archive(tmp_path / "tiny.tar")
    http_server.files["tiny.tar"] = data
    manifest = write_manifest(tmp_path / "tiny.toml", data, [http_server.url("gone.tar"), http_server.url("tiny.tar")])
    report = prepare_dataset("tinytest", tmp_path / "data", {}, manifest=manifest, workers=1)
    assert report.check.ok and (tmp_path / "data" / "downloads" / "tiny.tar").read_bytes() == data
    assert (tmp_path / "data" / "downloads" / "extracted" / "tiny" / "tiny" / "img").is_dir()


def test_changed_options_start_over(tmp_path: Path, archives: tuple[Path, Path]) -> None:
    _prepare(tmp_path, archives, workers=1)
    notes: list[str] = []
    report = _prepare(tmp_path, archives, workers=1, options={"crash_flag": "/nonexistent"}, notify=notes.append)
    assert report.reused == 0 and report.converted == N - 1
    assert any("from scratch" in note for note in notes)


def _cli() -> typer.Typer:
    probe = typer.Typer(cls=_RefineGroup, pretty_exceptions_enable=False)

    @probe.command()
    def tiny(root: Path, archives: Path, manifest: Path, skip_bad: bool = False, json_out: JsonOpt = None) -> None:
        run_prepare("tinytest", {}, root, archives, manifest, 1, False, skip_bad, json_out)

    @probe.command()
    def other() -> None:
        pass

    return probe


def test_cli_summary_json_and_exit_codes(tmp_path: Path) -> None:
    folder = tmp_path / "archives"
    folder.mkdir()
    data = make_archive(folder / "tiny.tar", bad_label_size="s05")
    manifest = write_manifest(tmp_path / "tiny.toml", data, ["http://127.0.0.1:9/tiny.tar"])
    args = ["tiny", str(tmp_path / "data"), str(folder), str(manifest)]
    failed = CliRunner().invoke(_cli(), args)
    assert failed.exit_code == 2 and "bad sample 's05'" in failed.output and "Traceback" not in failed.output
    result = CliRunner().invoke(_cli(), [*args, "--skip-bad", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "skipped s05" in result.output and "images/s" in result.output
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["check"]["ok"] and {"id": "s00", "reason": "no foreground pixels"} in saved["skipped"]


def test_cli_prepare_missing_archives_lists_them(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["prepare", "voc", "--root", str(tmp_path), "--archives", str(empty)])
    assert result.exit_code == 2, result.output
    assert "VOCtrainval_11-May-2012.tar" in result.output and "http" in result.output


def test_cli_prepare_list_fits_80_columns_cuts_no_licence_and_knows_the_sizes() -> None:
    from refine_cli.data.acquire.manifest import list_manifests, load_manifest

    result = CliRunner().invoke(app, ["prepare", "--list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    page = result.stdout
    assert max(len(line) for line in page.splitlines()) <= 80 and "…" not in page
    flat = " ".join(page.split())
    for name in list_manifests():
        manifest = load_manifest(name)
        assert " ".join(manifest.licence.split()) in flat, name  # every word of the terms, wrapped not cut
        row = next(line for line in page.splitlines() if line.startswith(f" {name} "))
        size = row.split()[1]
        assert size != "?" and size.lstrip("~")[0].isdigit(), row  # the sizes the README gives (approx_size)
    sizes = {
        line.split()[0]: " ".join(line.split()[1:3])
        for line in page.splitlines()
        if line[:1] == " " and line[1:2].strip()
    }
    assert sizes["ade20k"] == "~0.9 GB" and sizes["cityscapes"] == "~11.2 GB" and sizes["coco"] == "20.4 GB"


def test_missing_login_archives_say_where_to_get_them(tmp_path: Path) -> None:
    """Cityscapes' zips have no URL: the refusal names the homepage (it read "from see the dataset homepage")."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["prepare", "cityscapes", "--root", str(tmp_path), "--archives", str(empty)])
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert "gtFine_trainvaltest.zip from https://www.cityscapes-dataset.com/ (needs a login);" in line, line
    assert "from see" not in line


def test_cli_prepare_list_has_a_row_for_every_dataset_prepare_makes() -> None:
    """Every `refine prepare NAME` (packaged manifests, shapes, custom) is a row of `prepare --list`."""
    import typer

    result = CliRunner().invoke(app, ["prepare", "--list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.stdout.splitlines() if line[:1] == " " and line[1:2].strip()}
    made = set(typer.main.get_command(app).commands["prepare"].commands)
    assert {"voc", "shapes", "custom", "sunrgbd"} <= made and made <= listed, (made, listed)


def test_unverified_source_is_pinned_by_its_measured_sha256(tmp_path: Path, archives: tuple[Path, Path]) -> None:
    """No published checksum: meta.json still records the sha256 of the archive actually used."""
    folder, manifest = archives
    text = manifest.read_text()
    published = text.splitlines()[-1]
    manifest.write_text(text.replace(published, "unverified = true"))
    notes: list[str] = []
    report = prepare_dataset("tinytest", tmp_path / "data", {}, archives=folder, manifest=manifest, notify=notes.append)
    record = UnifiedDataset(report.path).meta.sources[0]
    actual = hashlib.sha256((folder / "tiny.tar").read_bytes()).hexdigest()
    assert record["sha256"] == actual and record["unverified"] is True and "md5" not in record
    assert any("no published checksum" in note for note in notes)
    # the measured sum is cached (keyed by path, size and mtime); a rewritten file is hashed again
    cached = json.loads((tmp_path / "data" / "downloads" / ".sha256-tiny.tar.json").read_text())
    assert cached["sha256"] == actual
    other = tmp_path / "other.bin"
    other.write_bytes(b"one")
    assert measured_sha256(other, cache_dir=tmp_path) == hashlib.sha256(b"one").hexdigest()
    other.write_bytes(b"two")
    os.utime(other, ns=(1, 1))  # a different mtime, as any rewrite gives
    assert measured_sha256(other, cache_dir=tmp_path) == hashlib.sha256(b"two").hexdigest()


def test_another_copy_of_a_source_starts_over(tmp_path: Path, archives: tuple[Path, Path]) -> None:
    """Reusing samples converted from a different archive would mix two datasets under one meta.json."""
    folder, manifest = archives
    text = manifest.read_text()
    manifest.write_text(text.replace(text.splitlines()[-1], "unverified = true"))
    first = prepare_dataset("tinytest", tmp_path / "data", {}, archives=folder, manifest=manifest)
    assert first.converted == N - 1
    data = make_archive(folder / "tiny.tar", bad_sample=True)  # a different copy of the same file name
    os.utime(folder / "tiny.tar", ns=(2, 2))
    notes: list[str] = []
    second = prepare_dataset(
        "tinytest", tmp_path / "data", {}, archives=folder, manifest=manifest, notify=notes.append, skip_bad=True
    )
    assert second.reused == 0 and any("from scratch" in note for note in notes)
    sha = UnifiedDataset(second.path).meta.sources[0]["sha256"]
    assert sha == hashlib.sha256(data).hexdigest()


def test_trusted_repacked_archive_records_its_own_sha256(tmp_path: Path, archives: tuple[Path, Path]) -> None:
    folder, manifest = archives
    data = make_archive(folder / "tiny.tar", bad_sample=True)  # differs from the manifest's sums
    with pytest.raises(RefineError, match="mismatch|differs|checksum|size"):
        prepare_dataset("tinytest", tmp_path / "data", {}, archives=folder, manifest=manifest)
    report = prepare_dataset(
        "tinytest", tmp_path / "data", {}, archives=folder, manifest=manifest, trust_archives=True, skip_bad=True
    )
    record = UnifiedDataset(report.path).meta.sources[0]
    assert record["trusted"] is True and record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["size"] == len(data)


def test_invalid_sample_id_from_a_damaged_list_is_one_clear_error(tmp_path: Path, archives: tuple[Path, Path]) -> None:
    folder, manifest = archives
    (folder / "extra").mkdir()
    with tarfile.open(folder / "tiny.tar", "a") as tar:  # an id that would become a hidden file
        info = tarfile.TarInfo("tiny/img/..hidden.png")
        data = _png(np.zeros((*SIZE, 3), np.uint8))
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    manifest.write_text(manifest.read_text().replace(manifest.read_text().splitlines()[-1], "unverified = true"))
    with pytest.raises(RefineError, match="not a valid sample id"):
        prepare_dataset("tinytest", tmp_path / "data", {}, archives=folder, manifest=manifest)


_PREPARE_IN_A_SECOND_PROCESS = """
import sys
from pathlib import Path
import tests.data.test_pipeline  # registers the test-only converter
from refine_cli.data.convert.pipeline import prepare_dataset
prepare_dataset("tinytest", Path(sys.argv[1]), {}, archives=Path(sys.argv[2]), manifest=Path(sys.argv[3]))
"""


def test_a_second_prepare_is_refused_or_waits_never_interleaves(
    tmp_path: Path, archives: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two prepares of one dataset at once (the reproduced race): the second names the first, or waits for it."""
    import signal

    from tests.support.processes import reaping, spawn, wait_for_holder

    with reaping() as started:
        first = spawn(["-c", _PREPARE_IN_A_SECOND_PROCESS, str(tmp_path / "data"), *map(str, archives)])
        started.append(first)
        wait_for_holder(tmp_path / "data" / "tinytest", first)
        first.send_signal(signal.SIGSTOP)  # frozen mid-run while holding the lock: the race window, made certain
        monkeypatch.setenv("REFINE_LOCK_WAIT", "0")
        with pytest.raises(RefineError, match=f"dataset folder .*tinytest is in use by pid {first.pid} on "):
            _prepare(tmp_path, archives)
        first.send_signal(signal.SIGCONT)
        monkeypatch.setenv("REFINE_LOCK_WAIT", "60")
        report = _prepare(tmp_path, archives)  # waits for the first, then finds its complete work
        assert first.wait(60) == 0, first.communicate()[0]
    assert report.converted == 0 and report.reused == N - 1 and report.check is not None and report.check.ok


def test_worker_processes_are_capped_by_the_cpus_and_the_work(
    tmp_path: Path, archives: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--workers 10000` for 12 samples starts no more processes than there are CPUs and samples."""
    from concurrent.futures import ProcessPoolExecutor

    from refine_cli.data.convert import pipeline
    from refine_cli.data.format import check

    started: list[int] = []

    class Counting(ProcessPoolExecutor):
        def __init__(self, max_workers: int, **kwargs: Any) -> None:
            started.append(max_workers)
            assert max_workers <= 2, f"{max_workers} worker processes asked for"  # fail before forking them
            super().__init__(max_workers=max_workers, **kwargs)

    monkeypatch.setattr(pipeline, "ProcessPoolExecutor", Counting)
    monkeypatch.setattr(check, "ProcessPoolExecutor", Counting)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    report = _prepare(tmp_path, archives, workers=10_000)
    assert report.check.ok and report.converted == N - 1
    assert started and max(started) <= 2
