"""`refine prepare coco`: COCO 2017 instances -> `coco-voc` (20 VOC classes, overlaps/crowds 255, small images dropped).

Pixel expectations are literals worked out from the fixture's rectangles (tests/support/fake_voc2012_sbd_coco.py
COCO_SCENES); whole labels are also compared with the fixture's own numpy painting of the rules.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refine_cli.data.acquire.extract import extract_archive
from refine_cli.data.acquire.manifest import load_manifest
from refine_cli.data.convert.base import SampleError
from refine_cli.data.convert.datasets.coco import decode_segmentation, rasterize
from refine_cli.data.convert.datasets.voc_family import COCO_TO_VOC, VOC_CLASSES
from refine_cli.data.convert.registry import get_converter
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.errors import RefineError
from tests.support.fake_voc2012_sbd_coco import build_coco, fixture_manifest
from tests.support.prepare_runner import run_prepare

KEYS = ("annotations", "train2017", "val2017")


def test_packaged_manifest_matches_the_reference() -> None:
    manifest = load_manifest("coco")
    sums = {s.key: (s.file, s.size, s.md5) for s in manifest.sources}
    assert sums == {
        "annotations": ("annotations_trainval2017.zip", 252_907_541, "f4bbac642086de4f52a3fdda2de5fa2c"),
        "train2017": ("train2017.zip", 19_336_861_798, "cced6f7f71b7629ddf16f17bbcfab6b2"),
        "val2017": ("val2017.zip", 815_585_330, "442b8da7639aecaf257c1dceb8ba8c80"),
    }


def test_category_map_is_torchvisions_cat_list() -> None:
    # torchvision references/segmentation/coco_utils.py CAT_LIST, in VOC index order 1..20.
    cat_list = [5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72]
    assert {coco: voc for voc, coco in enumerate(cat_list, start=1)} == COCO_TO_VOC
    assert VOC_CLASSES[COCO_TO_VOC[62]] == "chair" and VOC_CLASSES[COCO_TO_VOC[63]] == "sofa"


def _archives(tmp_path: Path, **kwargs: object) -> tuple[object, dict[str, Path]]:
    coco = build_coco(tmp_path / "archives", **kwargs)
    return coco, {"annotations": coco.annotations, "train2017": coco.train_images, "val2017": coco.val_images}


def test_prepare_coco_end_to_end(tmp_path: Path, http_server) -> None:
    coco, archives = _archives(tmp_path)
    for path in archives.values():
        http_server.files[path.name] = path.read_bytes()
    manifest = fixture_manifest(tmp_path, "coco", archives, http_server.url(""))
    root = tmp_path / "data"
    result = run_prepare(["coco", "--root", str(root), "--manifest", str(manifest), "--workers", "2"])
    assert result.exit_code == 0, result.output
    report = result.report
    assert report is not None and report["splits"] == {"train": 2, "val": 2}
    assert {entry["id"]: entry["reason"] for entry in report["skipped"]} == {
        "000000000632": "100 VOC-class pixels (< 1000)",
        "000000000724": "no VOC-class objects",
        "000000000776": "no VOC-class objects",
    }
    assert "000000000632" in result.output  # the drop is shown to the user too

    data = UnifiedDataset(root / "coco-voc")
    assert data.meta.name == "coco-voc" and data.meta.classes == VOC_CLASSES
    assert data.split_ids("train") == ["000000000139", "000000000285"]
    assert data.split_ids("val") == ["000000000785", "000000000872"]
    for expected in coco.expected.values():
        for sample_id, want in expected.items():
            if want is not None:
                np.testing.assert_array_equal(data.read_label(sample_id), want, err_msg=sample_id)
                assert data.image_path(sample_id).read_bytes() == coco.images[sample_id]

    scene = data.read_label("000000000139")  # person (4..43, 4..39), chair (30..59, 20..45), crowd people
    assert scene[10, 10] == 15  # person (COCO 1)
    assert scene[25, 35] == 255  # person and chair overlap
    assert scene[44, 50] == 9  # chair (COCO 62) alone
    assert scene[35, 10] == 15  # toilet (non-VOC) under the person: person stays
    assert scene[45, 2] == 0  # toilet alone: background
    assert scene[5, 55] == 255  # crowd of people
    assert scene[47, 63] == 0
    cat = data.read_label("000000000285")  # one cat instance made of two polygons
    assert cat[5, 5] == 8 and cat[20, 45] == 8 and cat[5, 45] == 0
    trains = data.read_label("000000000785")  # two train instances overlap: same class keeps the class
    assert trains[20, 30] == 19 and trains[40, 55] == 19  # and a non-VOC crowd (toilet) stays as it was
    assert data.read_label("000000000872")[20, 30] == 9


def test_min_pixels_option(tmp_path: Path) -> None:
    coco, archives = _archives(tmp_path)
    manifest = fixture_manifest(tmp_path, "coco", archives)
    args = ["coco", "--root", str(tmp_path / "data"), "--archives", str(coco.annotations.parent)]
    result = run_prepare([*args, "--manifest", str(manifest), "--workers", "1", "--min-pixels", "50"])
    assert result.exit_code == 0, result.output
    assert "000000000632" in UnifiedDataset(tmp_path / "data" / "coco-voc").split_ids("train")


def test_image_size_disagreeing_with_the_annotations_is_a_sample_error(tmp_path: Path) -> None:
    coco, archives = _archives(tmp_path, corrupt={872: "image_size"})
    sources = {key: extract_archive(archives[key], tmp_path / "x" / key) for key in KEYS}
    converter = get_converter("coco")
    plan = converter.plan(sources, {})
    item = next(item for item in plan.items if item.sample_id == "000000000872")
    expected = r"^its record in the annotations is 64x50 but image \S*000000000872\.jpg is 64x48$"
    with pytest.raises(SampleError, match=expected):
        converter.convert(item)


def test_work_items_carry_only_their_own_voc_annotations(tmp_path: Path) -> None:
    _, archives = _archives(tmp_path)
    sources = {key: extract_archive(archives[key], tmp_path / "x" / key) for key in KEYS}
    plan = get_converter("coco").plan(sources, {})
    by_id = {item.sample_id: item.args[3] for item in plan.items}
    assert [voc for voc, _crowd, _seg in by_id["000000000139"]] == [15, 9, 15]  # the toilet is not sent
    assert [crowd for _voc, crowd, _seg in by_id["000000000139"]] == [0, 0, 1]


def test_rle_forms_decode_alike() -> None:
    from pycocotools import mask as mask_utils

    mask = np.zeros((6, 5), dtype=np.uint8)
    mask[1:4, 2:5] = 1
    compressed = mask_utils.encode(np.asfortranarray(mask))
    as_text = {"size": compressed["size"], "counts": compressed["counts"].decode("ascii")}  # as JSON stores it
    uncompressed = {"size": [6, 5], "counts": [13, 3, 3, 3, 3, 3, 2]}  # column-major runs, zeros first
    for segmentation in (compressed, as_text, uncompressed):
        np.testing.assert_array_equal(decode_segmentation(segmentation, 6, 5), mask.astype(bool))
    # A polygon of two points would be read by pycocotools as a box: it is ignored instead.
    assert not decode_segmentation([[0.0, 0.0, 4.0, 4.0]], 6, 5).any()
    label = rasterize([(15, 0, uncompressed), (9, 0, [[2.0, 1.0, 5.0, 1.0, 5.0, 2.0, 2.0, 2.0]])], 6, 5)
    assert label[1, 3] == 255 and label[2, 3] == 15 and label[0, 0] == 0


def test_annotations_that_are_not_coco_2017_are_refused(tmp_path: Path) -> None:
    import json

    folder = tmp_path / "annotations"
    folder.mkdir()
    doc = {"images": [], "annotations": [], "categories": [{"id": 62, "name": "bed"}]}  # 62 is chair in COCO
    for split in ("train", "val"):
        (folder / f"instances_{split}2017.json").write_text(json.dumps(doc))
    sources = {"annotations": folder, "train2017": tmp_path, "val2017": tmp_path}
    with pytest.raises(RefineError, match="category 62 is 'bed', COCO 2017 calls it 'chair'"):
        get_converter("coco").plan(sources, {})


def test_lying_polygons_and_runs_are_refused_before_pycocotools() -> None:
    """A vertex at 1e308 made pycocotools allocate until the process was killed; runs longer than the
    mask are decoded without bounds checks. Both are a bad segmentation (ValueError -> SampleError)."""
    from pycocotools import mask as mask_utils

    far = [[1.0, 1.0, 4.0, 1.0, 1e5, 4.0]]  # 1e5 stays cheap here; 1e308 and NaN take the same path
    for segmentation, words in (
        (far, "not a number near"),
        ([[1.0, 1.0, 4.0, 1.0, "x", 4.0]], "not a number near"),
        ({"size": [6, 5], "counts": [10]}, "add up to 10"),
        ({"size": [6, 5], "counts": [31]}, "add up to 31"),
        ({"size": [6, 5], "counts": [-1, 31]}, "non-negative"),
        ({"size": [6, 5], "counts": "9"}, "add up to 9"),
    ):
        with pytest.raises(ValueError, match=words):
            decode_segmentation(segmentation, 6, 5)
    rng = np.random.default_rng(0)
    for _ in range(20):  # the Python reading of compressed strings agrees with pycocotools' own runs
        mask = np.asfortranarray((rng.random((7, 9)) < rng.random()).astype(np.uint8))
        assert np.array_equal(decode_segmentation(mask_utils.encode(mask), 7, 9), mask.astype(bool))
