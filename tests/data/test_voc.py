"""`refine prepare voc [--aug]`: VOC 2012 palette labels, and the SBD-augmented 10,582-image train_aug.

Fixture archives have the official layout (tests/support/fake_voc2012_sbd_coco.py); expected values are the
arrays the fixture painted (an oracle independent of the converter) and literals from docs/dataset-facts.md section 9.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refine_cli.class_tables import voc_palette
from refine_cli.data.acquire.extract import extract_archive
from refine_cli.data.acquire.manifest import load_manifest
from refine_cli.data.convert.base import SampleError
from refine_cli.data.convert.datasets.voc import train_aug_ids
from refine_cli.data.convert.datasets.voc_family import VOC_CLASSES
from refine_cli.data.convert.registry import get_converter
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.errors import RefineError
from tests.support.fake_voc2012_sbd_coco import (
    SBD_TRAIN,
    SBD_VAL,
    VOC_TRAIN,
    VOC_VAL,
    build_sbd,
    build_voc,
    fixture_manifest,
)
from tests.support.prepare_runner import run_prepare

# (VOC train | SBD train | SBD val) - VOC val, written out by hand for the fixture ids.
EXPECTED_TRAIN_AUG = ["2007_000032", "2007_000039", "2008_000002", "2008_000010", "2008_000015", "2008_000020"]
FIXTURE_SPLITS = {"train": 3, "val": 2, "train_aug": 6}


def test_packaged_manifest_matches_the_reference() -> None:
    manifest = load_manifest("voc")
    assert manifest.splits == {"train": 1464, "val": 1449, "train_aug": 10582}
    trainval = manifest.source("trainval")
    assert trainval.file == "VOCtrainval_11-May-2012.tar"
    assert trainval.size == 1_999_639_040
    assert trainval.md5 == "6cd6e144f989b92b3379bac3b3de84fd"
    assert trainval.sha1 == "4e443f8a2eca6b1dac8a6c57641b67dd40621a49"
    assert len(trainval.urls) >= 4 and any("brainchip" in url for url in trainval.urls)  # main host is blocked
    sbd = manifest.source("sbd")
    assert sbd.optional and sbd.md5 == "82b4d87ceb2ed10f6038a1cba92111cb" and sbd.size == 1_419_539_633


def test_classes_and_palette_are_the_voc_ones() -> None:
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[9] == "chair" and VOC_CLASSES[20] == "tvmonitor"
    assert voc_palette(21)[:4] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]
    assert voc_palette(21)[15] == (192, 128, 128)  # person


def test_train_aug_arithmetic() -> None:
    assert train_aug_ids(VOC_TRAIN, VOC_VAL, SBD_TRAIN, SBD_VAL) == EXPECTED_TRAIN_AUG
    assert "2007_000033" in SBD_TRAIN and "2007_000033" not in EXPECTED_TRAIN_AUG  # SBD train ∩ VOC val leaks


@pytest.fixture
def raw(tmp_path: Path) -> dict[str, object]:
    archives = tmp_path / "archives"
    voc, sbd = build_voc(archives), build_sbd(archives)
    return {"voc": voc, "sbd": sbd, "archives": archives}


def test_prepare_voc_aug_end_to_end(tmp_path: Path, raw: dict, http_server) -> None:
    voc, sbd = raw["voc"], raw["sbd"]
    for archive in (voc.archive, sbd.archive):
        http_server.files[archive.name] = archive.read_bytes()
    manifest = fixture_manifest(
        tmp_path, "voc", {"trainval": voc.archive, "sbd": sbd.archive}, http_server.url(""), FIXTURE_SPLITS
    )
    root = tmp_path / "data"
    result = run_prepare(["voc", "--aug", "--root", str(root), "--manifest", str(manifest), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert result.report is not None and result.report["splits"] == {"train": 3, "val": 2, "train_aug": 6}
    assert result.report["expected"] == FIXTURE_SPLITS and result.report["check"]["ok"] is True

    data = UnifiedDataset(root / "voc")
    assert data.meta.classes == VOC_CLASSES and data.meta.num_classes == 21
    assert data.split_ids("train") == VOC_TRAIN
    assert data.split_ids("val") == VOC_VAL
    assert data.split_ids("train_aug") == EXPECTED_TRAIN_AUG
    for sample_id in VOC_TRAIN + VOC_VAL:  # VOC label wins, even for ids SBD also has
        np.testing.assert_array_equal(data.read_label(sample_id), voc.labels[sample_id])
        assert data.image_path(sample_id).read_bytes() == voc.images[sample_id]  # copied byte for byte
    for sample_id in ("2008_000010", "2008_000015", "2008_000020"):  # SBD-only: SBD .mat label + SBD image
        np.testing.assert_array_equal(data.read_label(sample_id), sbd.labels[sample_id])
        assert data.image_path(sample_id).read_bytes() == sbd.images[sample_id]
    first = data.read_label("2007_000032")
    assert 255 in first and set(np.unique(first)) <= set(range(21)) | {255}  # indices and the void band
    assert 255 not in data.read_label("2008_000010")  # SBD has no void band
    assert data.read_label("2008_000008").shape == (64, 48)  # the portrait image keeps its orientation
    assert not (root / "voc" / "images" / "2007_000027.jpg").exists()  # detection-only image: not in any list

    from typer.testing import CliRunner

    from refine_cli.cli.app import app

    checked = CliRunner().invoke(app, ["check", str(root / "voc"), "--full", "--workers", "1"])
    assert checked.exit_code == 0, checked.output


def test_aug_without_the_sbd_archive_lists_it(tmp_path: Path, raw: dict) -> None:
    folder = tmp_path / "only-voc"
    folder.mkdir()
    raw["voc"].archive.rename(folder / raw["voc"].archive.name)
    args = ["voc", "--aug", "--root", str(tmp_path / "data"), "--archives", str(folder), "--trust-archives"]
    result = run_prepare(args)
    assert result.exit_code == 2 and "benchmark.tgz" in result.output and "Traceback" not in result.output


def _extracted(tmp_path: Path, voc: Path, sbd: Path | None = None) -> dict[str, Path]:
    sources = {"trainval": extract_archive(voc, tmp_path / "x" / "voc")}
    if sbd is not None:
        sources["sbd"] = extract_archive(sbd, tmp_path / "x" / "sbd")
    return sources


def test_plan_without_aug_needs_no_sbd(tmp_path: Path) -> None:
    voc = build_voc(tmp_path / "a")
    converter = get_converter("voc")
    assert converter.required_sources({}) == ["trainval"]
    assert converter.required_sources({"aug": True}) == ["trainval", "sbd"]
    plan = converter.plan(_extracted(tmp_path, voc.archive), {})
    assert plan.splits == {"train": VOC_TRAIN, "val": VOC_VAL}
    assert [item.sample_id for item in plan.items] == VOC_TRAIN + VOC_VAL


def test_train_aug_count_is_asserted_against_the_manifest(tmp_path: Path) -> None:
    voc, sbd = build_voc(tmp_path / "a"), build_sbd(tmp_path / "a", val=["2007_000032"])  # SBD val lost 2008_000020
    manifest = fixture_manifest(tmp_path, "voc", {"trainval": voc.archive, "sbd": sbd.archive}, None, FIXTURE_SPLITS)
    with pytest.raises(RefineError, match=r"train_aug has 5 ids, expected 6"):
        get_converter("voc").plan(_extracted(tmp_path, voc.archive, sbd.archive), {"aug": True, "manifest": manifest})
    # Lists that are not the manifest's (e.g. a user's own subset) are converted without the assertion.
    plan = get_converter("voc").plan(
        _extracted(tmp_path, voc.archive, sbd.archive), {"aug": True, "manifest": load_manifest("voc")}
    )
    assert len(plan.splits["train_aug"]) == 5


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("label_size", r"label .*2007_000039\.png is 63x48 but image .*2007_000039\.jpg is 64x48"),
        ("label_rgb", r"label .*2007_000039\.png has mode RGB"),
    ],
)
def test_bad_samples_name_the_file(tmp_path: Path, defect: str, message: str) -> None:
    voc = build_voc(tmp_path / "a", corrupt={"2007_000039": defect})
    converter = get_converter("voc")
    plan = converter.plan(_extracted(tmp_path, voc.archive), {})
    item = next(item for item in plan.items if item.sample_id == "2007_000039")
    with pytest.raises(SampleError, match=message):
        converter.convert(item)


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("label_size", "2007_000039.png is 63x48"),
        ("image_truncated", "cannot read image"),
        ("image_bomb", "claims 30000x30000 = 900.0 Mpixel, over the 100 Mpixel limit"),
    ],
)
def test_bad_sample_fails_the_run_unless_skip_bad(tmp_path: Path, defect: str, message: str) -> None:
    voc = build_voc(tmp_path / "a", corrupt={"2007_000039": defect})
    manifest = fixture_manifest(tmp_path, "voc", {"trainval": voc.archive}, None, {"train": 3, "val": 2})
    common = [
        "voc",
        "--root",
        str(tmp_path / "data"),
        "--manifest",
        str(manifest),
        "--archives",
        str(voc.archive.parent),
    ]
    failed = run_prepare([*common, "--workers", "1"])
    assert failed.exit_code == 2
    assert message in failed.output and "2007_000039" in failed.output and "Traceback" not in failed.output
    skipped = run_prepare([*common, "--workers", "1", "--skip-bad"])
    assert skipped.exit_code == 0, skipped.output
    assert "2007_000039" not in UnifiedDataset(tmp_path / "data" / "voc").split_ids("train")
    assert skipped.report is not None and [entry["id"] for entry in skipped.report["skipped"]] == ["2007_000039"]
    assert message in skipped.report["skipped"][0]["reason"]
