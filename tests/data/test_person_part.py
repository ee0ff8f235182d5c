"""`refine prepare person-part`: VOC 2010 images + Chen et al.'s part labels -> unified `person-part`.

Expected values are literals from the reference (docs/dataset-facts.md section 5), never computed by our code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.acquire.manifest import load_manifest
from refine_cli.data.convert.base import SampleError
from refine_cli.data.convert.datasets.person_part import PERSON_PART_CLASSES, person_part_lut
from refine_cli.data.convert.registry import get_converter
from refine_cli.data.format.unified import UnifiedDataset
from tests.support.fake_voc2010_person_part_context import (
    PERSON_PART_ZIP,
    VOC2010_TAR,
    build_person_part_zip,
    build_voc2010_tar,
)
from tests.support.fake_voc2012_sbd_coco import fixture_manifest
from tests.support.prepare_runner import PrepareRun, run_prepare

TRAIN = ["2008_000003", "2008_000008"]
VAL = ["2008_000026", "2008_000034"]
PORTRAIT = "2008_000008"  # 48 wide x 64 high: catches width/height swaps


def _part_label(height: int, width: int, shift: int = 0) -> np.ndarray:
    """Every source value 0..6 in its own band, plus a 255 void border."""
    label = np.zeros((height, width), dtype=np.uint8)
    for value in range(7):
        label[4 + value * 5 : 8 + value * 5, 2 + shift : width - 2] = value
    label[0, :] = 255
    return label


def _labels(ids: list[str]) -> dict[str, np.ndarray]:
    return {i: _part_label(64, 48) if i == PORTRAIT else _part_label(48, 64, shift=k) for k, i in enumerate(ids)}


@pytest.fixture
def archives(tmp_path: Path) -> Path:
    folder = tmp_path / "archives"
    build_voc2010_tar(folder, TRAIN, VAL, sizes={PORTRAIT: (48, 64)})
    build_person_part_zip(folder, _labels(TRAIN), _labels(VAL))
    return folder


def test_class_names_match_refinenet_order() -> None:
    assert PERSON_PART_CLASSES == [
        "background",
        "head",
        "torso",
        "upper arms",
        "lower arms",
        "upper legs",
        "lower legs",
    ]


@pytest.mark.parametrize(
    ("order", "pairs"),
    [
        # The zip (DeepLab / RefineNet gen_class_info_person_parts.m): values are already our classes.
        ("deeplab", [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (255, 255)]),
        # Parsing R-CNN release: 1 lower-arm, 2 head, 3 upper-leg, 4 torso, 5 lower-leg, 6 upper-arm.
        ("parsing-rcnn", [(0, 0), (1, 4), (2, 1), (3, 5), (4, 2), (5, 6), (6, 3), (255, 255)]),
    ],
)
def test_label_order_tables(order: str, pairs: list[tuple[int, int]]) -> None:
    lut = person_part_lut(order)
    for source, target in pairs:
        assert lut[source] == target, (order, source)
    assert lut[7] not in range(7) and lut[7] != 255  # anything else is invalid, never a class


def _extracted(tmp_path: Path, archives: Path) -> dict[str, Path]:
    import tarfile
    import zipfile

    voc, ann = tmp_path / "x_voc", tmp_path / "x_pp"
    with tarfile.open(archives / VOC2010_TAR) as tar:
        tar.extractall(voc, filter="data")
    with zipfile.ZipFile(archives / PERSON_PART_ZIP) as archive:
        archive.extractall(ann)
    return {"voc2010": voc, "annotations": ann}


def test_plan_reads_lists_and_rejects_bad_labels(tmp_path: Path) -> None:
    folder = tmp_path / "archives"
    labels = _labels(TRAIN + VAL)
    labels[VAL[0]] = labels[VAL[0]].copy()
    labels[VAL[0]][10, 10] = 9  # not a Person-Part value
    build_voc2010_tar(folder, TRAIN, VAL, sizes={PORTRAIT: (48, 64)})
    wrong_size = {TRAIN[0]: _part_label(40, 64)}
    build_person_part_zip(
        folder,
        {**{i: labels[i] for i in TRAIN}, **wrong_size},
        {i: labels[i] for i in VAL},
        id_lists=False,  # only the DeepLab lists: /JPEGImages/<id>.jpg /SegmentationPart/<id>.png
    )
    converter = get_converter("person-part")
    plan = converter.plan(_extracted(tmp_path, folder), {})
    assert plan.splits == {"train": TRAIN, "val": VAL}
    items = {item.sample_id: item for item in plan.items}
    assert converter.convert(items[PORTRAIT]).label.shape == (64, 48)
    with pytest.raises(SampleError, match=r"2008_000003\.png is 64x40 but image .*2008_000003\.jpg is 64x48"):
        converter.convert(items[TRAIN[0]])
    with pytest.raises(SampleError, match=r"2008_000026\.png has values \[9\]"):
        converter.convert(items[VAL[0]])


def test_rgb_rendered_labels_are_decoded_through_the_voc_colour_map(tmp_path: Path) -> None:
    folder = tmp_path / "archives"
    labels = _labels(TRAIN + VAL)
    build_voc2010_tar(folder, TRAIN, VAL, sizes={PORTRAIT: (48, 64)})
    build_person_part_zip(folder, {i: labels[i] for i in TRAIN}, {i: labels[i] for i in VAL}, mode="RGB")
    converter = get_converter("person-part")
    plan = converter.plan(_extracted(tmp_path, folder), {})
    sample = converter.convert(plan.items[0])
    np.testing.assert_array_equal(sample.label, labels[TRAIN[0]])


def _prepare(tmp_path: Path, archives: Path, *extra: str, base_url: str | None = None) -> PrepareRun:
    """`refine prepare person-part` on the fixture archives: from `base_url` (download) or `--archives`."""
    sources = {"voc2010": archives / VOC2010_TAR, "annotations": archives / PERSON_PART_ZIP}
    manifest = fixture_manifest(tmp_path, "person-part", sources, base_url, {"train": len(TRAIN), "val": len(VAL)})
    args = ["person-part", "--root", str(tmp_path / "data"), "--manifest", str(manifest), *extra]
    return run_prepare(args if base_url else [*args, "--archives", str(archives)])


def test_packaged_manifest_matches_the_reference() -> None:
    manifest = load_manifest("person-part")
    assert manifest.splits == {"train": 1716, "val": 1817}
    voc = manifest.source("voc2010")
    assert voc.file == "VOCtrainval_03-May-2010.tar"
    assert voc.md5 == "da459979d0c395079b5c75ee67908abb"
    assert voc.sha1 == "bf9985e9f2b064752bf6bd654d89f017c76c395a"
    annotations = manifest.source("annotations")
    assert annotations.file == "pascal_person_part.zip"
    assert annotations.urls[0] == "http://liangchiehchen.com/data/pascal_person_part.zip"
    assert annotations.checksums() == {}  # none was ever published: the manifest says so with unverified = true


def test_prepare_person_part_end_to_end(tmp_path: Path, archives: Path, http_server) -> None:
    for archive in archives.iterdir():
        http_server.files[archive.name] = archive.read_bytes()
    result = _prepare(tmp_path, archives, "--workers", "2", base_url=http_server.url(""))
    assert result.exit_code == 0, result.output
    assert result.report is not None and result.report["splits"] == {"train": 2, "val": 2}
    assert result.report["check"]["ok"] is True
    dataset = UnifiedDataset(tmp_path / "data" / "person-part")
    assert dataset.meta.classes == PERSON_PART_CLASSES
    assert dataset.split_ids("train") == TRAIN and dataset.split_ids("val") == VAL
    label = dataset.read_label(TRAIN[0])
    # Band of source value v at rows 4+5v .. 7+5v: identity in the zip's (DeepLab) order.
    assert [int(label[5 + 5 * v, 10]) for v in range(7)] == [0, 1, 2, 3, 4, 5, 6]
    assert int(label[0, 5]) == 255 and int(label[20, 0]) == 0
    assert dataset.read_label(PORTRAIT).shape == (64, 48)
    voc = tmp_path / "data" / "downloads" / "extracted" / "VOCtrainval_03-May-2010" / "VOCdevkit" / "VOC2010"
    assert dataset.image_path(VAL[0]).read_bytes() == (voc / "JPEGImages" / f"{VAL[0]}.jpg").read_bytes()
    assert not (tmp_path / "data" / "person-part" / "images" / "2010_009999.jpg").exists()
    # The separate validator agrees.
    checked = CliRunner().invoke(app, ["check", str(tmp_path / "data" / "person-part")])
    assert checked.exit_code == 0, checked.output


def test_prepare_parsing_rcnn_order_reconverts_and_resumes(tmp_path: Path, archives: Path) -> None:
    assert _prepare(tmp_path, archives, "--workers", "1").exit_code == 0
    # Another source order must not reuse labels mapped with the first one.
    result = _prepare(tmp_path, archives, "--workers", "1", "--label-order", "parsing-rcnn")
    assert result.exit_code == 0, result.output
    assert result.report["converted"] == 4 and result.report["reused"] == 0
    dataset = UnifiedDataset(tmp_path / "data" / "person-part")
    label = dataset.read_label(TRAIN[0])
    assert [int(label[5 + 5 * v, 10]) for v in range(7)] == [0, 4, 1, 5, 2, 6, 3]
    assert dataset.meta.extra["source_label_order"] == "parsing-rcnn"
    again = _prepare(tmp_path, archives, "--workers", "1", "--label-order", "parsing-rcnn")
    assert again.exit_code == 0 and again.report["converted"] == 0 and again.report["reused"] == 4


def test_missing_label_member_is_one_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "archives"
    build_voc2010_tar(folder, TRAIN, VAL, sizes={PORTRAIT: (48, 64)})
    build_person_part_zip(folder, _labels(TRAIN), _labels(VAL), omit_labels=[VAL[0]])
    result = _prepare(tmp_path, folder, "--workers", "1")
    assert result.exit_code == 2
    assert "missing label file" in result.output and "2008_000026.png" in result.output
    assert "Traceback" not in result.output


def test_missing_image_unreadable_label_and_skip_bad(tmp_path: Path) -> None:
    folder = tmp_path / "archives"
    build_voc2010_tar(folder, TRAIN, VAL, sizes={PORTRAIT: (48, 64)}, omit_images=[TRAIN[1]])
    build_person_part_zip(folder, _labels(TRAIN), _labels(VAL), raw_labels={VAL[1]: b"\x89PNG broken"})
    result = _prepare(tmp_path, folder, "--workers", "1")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "2008_000008.jpg" in result.output or "2008_000034.png" in result.output
    result = _prepare(tmp_path, folder, "--workers", "1", "--skip-bad")
    assert result.exit_code == 0, result.output
    reasons = {entry["id"]: entry["reason"] for entry in result.report["skipped"]}
    assert "missing image file" in reasons[TRAIN[1]] and "2008_000008.jpg" in reasons[TRAIN[1]]
    assert "cannot read label" in reasons[VAL[1]] and "2008_000034.png" in reasons[VAL[1]]
    dataset = UnifiedDataset(tmp_path / "data" / "person-part")
    assert dataset.split_ids("train") == [TRAIN[0]] and dataset.split_ids("val") == [VAL[0]]
