"""SUN RGB-D: the official release's layout (v7.3 labels, older .mat metadata, or the other way round),
its split files, the 0 -> ignore mapping, the class table, bad input, and `refine prepare` end to end."""

from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.acquire.manifest import load_manifest
from refine_cli.data.convert.base import SampleError
from refine_cli.data.convert.datasets.sunrgbd import (
    SUNRGBD_CLASSES,
    SUNRGBDConverter,
    choose_release,
    frame_folder,
    sunrgbd_lut,
)
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.errors import RefineError
from tests.support.fake_nyu_ade20k_cityscapes import patch_center
from tests.support.fake_sunrgbd import FRAMES, PAINTED, FakePreprocessed, build_preprocessed, build_sunrgbd
from tests.support.fake_voc2012_sbd_coco import fixture_manifest
from tests.support.prepare_runner import run_prepare

# seg37list.mat index k (1-based source value) -> (unified value, name); 0 = unlabeled
KNOWN = {0: (255, None), 1: (0, "wall"), 2: (1, "floor"), 5: (4, "chair"), 20: (19, "floor mat"),
         31: (30, "person"), 36: (35, "bathtub"), 37: (36, "bag")}  # fmt: skip


def test_lut_and_class_table() -> None:
    lut = sunrgbd_lut()
    for source, (target, name) in KNOWN.items():
        assert lut[source] == target
        if name is not None:
            assert SUNRGBD_CLASSES[target] == name
    assert len(SUNRGBD_CLASSES) == 37 and lut[38] == 255
    assert frame_folder("/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU0001/image/NYU0001.jpg") == "kv1/NYUdata/NYU0001"
    assert frame_folder("/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU0001/") == "kv1/NYUdata/NYU0001"


def _extracted(tmp_path: Path, **kwargs) -> tuple[dict[str, Path], object]:
    fake = build_sunrgbd(tmp_path / "raw", **kwargs)
    sources = {}
    for key, archive in (("images", fake.images), ("toolbox", fake.toolbox)):
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(tmp_path / key)
        sources[key] = tmp_path / key
    return sources, fake


@pytest.mark.parametrize("swap_formats", [False, True], ids=["release-formats", "v73-metadata-v5-labels"])
def test_plan_and_convert(tmp_path: Path, swap_formats: bool) -> None:
    sources, fake = _extracted(tmp_path, swap_formats=swap_formats)
    plan = SUNRGBDConverter().plan(sources, {})
    assert plan.splits == fake.splits and plan.spec.classes == SUNRGBD_CLASSES
    assert plan.spec.extra["frames_in_no_split"] == 1  # kv1/b3dodata/img_0063 is in neither list
    for item in plan.items:
        out = SUNRGBDConverter.convert(item)
        source = fake.labels[item.sample_id]
        assert out.label.shape == source.shape == FRAMES[int(item.sample_id) - 1][2]
        for index in range(len(PAINTED)):
            y, x = patch_center(index, source.shape[1])
            assert out.label[y, x] == KNOWN[int(source[y, x])][0]
        assert out.label[-1, -1] == int(source[-1, -1]) - 1  # the fill value 3 or 4
        assert out.image_src is not None and out.image_src.name == FRAMES[int(item.sample_id) - 1][1]


@pytest.mark.parametrize(("kind", "message"), [("wrong-size", "is 73x52 but image"), ("value-99", r"values \[99\]")])
def test_bad_label_names_the_frame(tmp_path: Path, kind: str, message: str) -> None:
    sources, _ = _extracted(tmp_path, bad={"00002": kind})
    item = next(i for i in SUNRGBDConverter().plan(sources, {}).items if i.sample_id == "00002")
    with pytest.raises(SampleError, match=message) as caught:
        SUNRGBDConverter.convert(item)
    assert "SUNRGBD2Dseg.mat" in caught.value.reason


def test_not_the_release_layout(tmp_path: Path) -> None:
    sources, _ = _extracted(tmp_path)
    (sources["toolbox"] / "SUNRGBDtoolbox" / "Metadata" / "SUNRGBD2Dseg.mat").unlink()
    with pytest.raises(RefineError, match="does not contain Metadata/SUNRGBD2Dseg.mat"):
        SUNRGBDConverter().plan(sources, {})


def test_prepare_sunrgbd_from_archives(tmp_path: Path) -> None:
    fake = build_sunrgbd(tmp_path / "archives")
    manifest = fixture_manifest(tmp_path, "sunrgbd", {"images": fake.images, "toolbox": fake.toolbox},
                               splits={"train": 3, "val": 2})  # fmt: skip
    root = tmp_path / "data"
    args = ["sunrgbd", "--root", str(root), "--archives", str(tmp_path / "archives"), "--manifest", str(manifest)]
    result = run_prepare([*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert result.report["splits"] == {"train": 3, "val": 2} and result.report["check"]["ok"] is True
    dataset = UnifiedDataset(root / "sunrgbd")
    assert dataset.meta.classes == SUNRGBD_CLASSES and dataset.meta.ignore_index == 255
    assert dataset.split_ids("val") == fake.splits["val"]
    for sample_id in fake.splits["train"] + fake.splits["val"]:
        label, source = dataset.read_label(sample_id), fake.labels[sample_id]
        y, x = patch_center(3, source.shape[1])
        assert label[y, x] == KNOWN[int(source[y, x])][0]
        assert dataset.read_image(sample_id).shape == (*source.shape, 3)
    assert not np.array_equal(dataset.read_label("00001"), dataset.read_label("00003")[:48, :63])


def test_packaged_manifest_and_list() -> None:
    manifest = load_manifest("sunrgbd")
    assert manifest.splits == {"train": 5285, "val": 5050}
    assert manifest.source("toolbox").md5 == "18d22e1761d36352f37232cba102f91f"
    assert manifest.source("images").unverified  # no checksum is published for SUNRGBD.zip
    assert all(manifest.source(key).unverified for key in ("train_images", "test_images", "labels"))
    listed = CliRunner().invoke(app, ["prepare", "--list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "sunrgbd" in listed.output and "SUN RGB-D" in listed.output


# ---------------------------------------------------------------- the preprocessed release (--release preprocessed)


def _extracted_preprocessed(tmp_path: Path, **kwargs) -> tuple[dict[str, Path], FakePreprocessed]:
    fake = build_preprocessed(tmp_path / "raw", **kwargs)
    sources = {}
    for key in ("train_images", "test_images", "labels"):
        with tarfile.open(getattr(fake, key)) as handle:
            handle.extractall(tmp_path / key, filter="data")
        sources[key] = tmp_path / key
    return sources, fake


def test_preprocessed_plan_pairs_numbers_and_maps_labels(tmp_path: Path) -> None:
    sources, fake = _extracted_preprocessed(tmp_path)
    plan = SUNRGBDConverter().plan(sources, {"release": "preprocessed"})
    assert plan.splits == fake.splits
    assert fake.splits == {"train": ["005051", "005052", "005053"], "val": ["000001", "000002", "000003"]}
    assert plan.spec.classes == SUNRGBD_CLASSES and not plan.bad
    assert plan.spec.extra["labels_without_image"] == 1  # img-000004.png
    for item in plan.items:
        out = SUNRGBDConverter.convert(item)
        source = fake.sources[item.sample_id]
        assert out.label.shape == source.shape
        for index in range(len(PAINTED)):
            y, x = patch_center(index, source.shape[1])
            assert out.label[y, x] == KNOWN[int(source[y, x])][0]
        assert out.label[-1, -1] == int(source[-1, -1]) - 1
        number = int(item.sample_id) - (5050 if item.sample_id in fake.splits["train"] else 0)
        assert out.image_src is not None and out.image_src.name == f"img-{number:06d}.jpg"
        folder = "train_images" if item.sample_id in fake.splits["train"] else "test_images"
        assert out.image_src.parent == sources[folder]


def test_preprocessed_bad_input(tmp_path: Path) -> None:
    sources, _ = _extracted_preprocessed(tmp_path, bad={"005052": "missing", "000002": "value-40", "000003": "rgb"})
    plan = SUNRGBDConverter().plan(sources, {"release": "preprocessed"})
    assert plan.bad == [("005052", f"{sources['train_images'] / 'img-000002.jpg'} has no label img-005052.png")]
    items = {item.sample_id: item for item in plan.items}
    with pytest.raises(SampleError, match=r"img-000002.png has values \[40\] outside 0..37"):
        SUNRGBDConverter.convert(items["000002"])
    assert SUNRGBDConverter.convert(items["000003"]).label.ndim == 2  # an RGB copy with equal channels
    (sources["test_images"] / "img-005051.jpg").write_bytes(b"x")  # a train image among the test ones
    with pytest.raises(RefineError, match="numbered up to 5051, but the release has 5,050"):
        SUNRGBDConverter().plan(sources, {"release": "preprocessed"})
    for path in sources["labels"].iterdir():
        path.unlink()
    with pytest.raises(RefineError, match="holds no img-NNNNNN.png files"):
        SUNRGBDConverter().plan(sources, {"release": "preprocessed"})


def test_choose_release(tmp_path: Path) -> None:
    files = {s.key: s.file for s in load_manifest("sunrgbd").sources}
    assert choose_release("toolbox", None, files) == "toolbox"
    assert choose_release(" Preprocessed ", None, files) == "preprocessed"
    assert choose_release("auto", None, files) == "toolbox"
    assert choose_release("auto", tmp_path, files, prepared="preprocessed") == "preprocessed"  # downloads deleted
    for key in ("train_images", "test_images", "labels"):
        (tmp_path / files[key]).write_bytes(b"x")
    assert choose_release("auto", tmp_path, files) == "preprocessed"
    (tmp_path / files["toolbox"]).write_bytes(b"x")
    assert choose_release("auto", tmp_path, files, prepared="preprocessed") == "preprocessed"  # no SUNRGBD.zip
    (tmp_path / files["images"]).write_bytes(b"x")
    assert choose_release("auto", tmp_path, files, prepared="preprocessed") == "toolbox"  # the official files win
    with pytest.raises(RefineError, match="--release 'zip' is not one of auto, toolbox, preprocessed"):
        choose_release("zip", None, files)


@pytest.mark.parametrize("with_official_zip", [False, True], ids=["preprocessed-only", "both-releases"])
def test_prepare_sunrgbd_preprocessed_auto(tmp_path: Path, with_official_zip: bool) -> None:
    archives = tmp_path / "archives"
    fake = build_preprocessed(archives)
    if with_official_zip:  # both releases in the folder: auto keeps the official one, which is incomplete here
        (archives / "SUNRGBD.zip").write_bytes(b"PK")
    root = tmp_path / "data"
    result = run_prepare(["sunrgbd", "--root", str(root), "--archives", str(archives), "--workers", "1"])
    if with_official_zip:
        assert result.exit_code != 0 and "SUNRGBDtoolbox.zip" in result.output
        assert not (root / "sunrgbd").exists()
        return
    assert result.exit_code == 0, result.output
    assert result.report["splits"] == {"train": 3, "val": 3} and result.report["check"]["ok"] is True
    dataset = UnifiedDataset(root / "sunrgbd")
    assert dataset.meta.classes == SUNRGBD_CLASSES and dataset.split_ids("val") == fake.splits["val"]
    for sample_id, source in fake.sources.items():
        label = dataset.read_label(sample_id)
        y, x = patch_center(4, source.shape[1])
        assert label[y, x] == KNOWN[int(source[y, x])][0] and label.shape == source.shape
        assert dataset.read_image(sample_id).shape == (*source.shape, 3)
    meta = json.loads((root / "sunrgbd" / "meta.json").read_text())
    assert {s["key"] for s in meta["sources"]} == {"train_images", "test_images", "labels"}
    assert all(s["unverified"] and len(s["sha256"]) == 64 for s in meta["sources"])
    assert "note: SUN RGB-D release: preprocessed" in result.output
    files = {"train_images": fake.train_images, "test_images": fake.test_images, "labels": fake.labels}
    manifest = fixture_manifest(tmp_path, "sunrgbd", files)  # URLs on a closed local port: nothing is fetched
    for archive in archives.iterdir():  # downloads deleted: a rerun keeps the release it was made from
        archive.unlink()
    again = run_prepare(["sunrgbd", "--root", str(root), "--manifest", str(manifest), "--workers", "1"])
    assert "note: SUN RGB-D release: preprocessed" in again.output
    assert "SUNRGBD-train_images.tgz" in again.output and "SUNRGBD.zip" not in again.output  # not 6.4 GB of zip


def test_prepare_sunrgbd_preprocessed_downloads_only_its_files(tmp_path: Path, http_server) -> None:
    fake = build_preprocessed(tmp_path / "archives")
    files = {"train_images": fake.train_images, "test_images": fake.test_images, "labels": fake.labels}
    for path in files.values():
        http_server.files[path.name] = path.read_bytes()
    manifest = fixture_manifest(tmp_path, "sunrgbd", files, base_url=http_server.url(""), splits={"train": 3, "val": 3})
    root = tmp_path / "data"
    args = ["sunrgbd", "--release", "preprocessed", "--root", str(root), "--manifest", str(manifest)]
    result = run_prepare([*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert result.report["splits"] == {"train": 3, "val": 3}
    assert sorted(p.name for p in (root / "downloads").glob("*.*gz")) == sorted(p.name for p in files.values())
    assert all(len(http_server.requests_for(p.name)) == 1 for p in files.values())
    assert UnifiedDataset(root / "sunrgbd").split_ids("train") == fake.splits["train"]
