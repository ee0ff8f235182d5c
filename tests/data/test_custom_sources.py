"""`refine prepare custom`: every source kind, in the layouts CVAT, Datumaro, Label Studio, Roboflow export.

The oracle is the label each fixture painted (tests/support/custom_exports.py), never the converter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from refine_cli.data.format.unified import UnifiedDataset
from tests.support import custom_exports as ex
from tests.support.prepare_runner import run_prepare


def prepare(source: Path | list[Path], root: Path, *extra: str, name: str = "own"):  # noqa: ANN201
    sources = source if isinstance(source, list) else [source]
    args = ["custom", name, *[a for s in sources for a in ("--from", str(s))], "--root", str(root), "-j", "1"]
    return run_prepare([*args, *extra])


def labels_of(path: Path) -> dict[str, np.ndarray]:
    dataset = UnifiedDataset(path)
    return {sample_id: dataset.read_label(sample_id) for sample_id in dataset.label_ids()}


def test_cvat_segmentation_mask_export_colours_labelmap_and_random_split(tmp_path: Path) -> None:
    painted = ex.cvat_voc_export(tmp_path / "cvat", n=6)
    boundary = tmp_path / "cvat" / "SegmentationClass" / "frame_000002.png"
    rgb = np.array(Image.open(boundary))
    rgb[0, :] = (224, 224, 192)  # the VOC format's void colour
    Image.fromarray(rgb).save(boundary)
    painted["frame_000002"] = painted["frame_000002"].copy()
    painted["frame_000002"][0, :] = 255
    run = prepare(tmp_path / "cvat", tmp_path / "data")
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.classes == ["background", "cat", "dog"]
    assert dataset.meta.palette == [[0, 0, 0], [250, 50, 83], [51, 221, 255]]
    got = labels_of(dataset.path)
    assert sorted(got) == sorted(painted) and all(np.array_equal(got[k], painted[k]) for k in painted)
    assert dataset.meta.extra["split"] == {"kind": "random", "seed": 0, "val_fraction": 0.1, "from": ["default"]}
    train, val = dataset.split_ids("train"), dataset.split_ids("val")
    assert len(train) == 5 and len(val) == 1 and not set(train) & set(val)
    image = dataset.image_path("frame_000001")
    assert image.read_bytes() == (tmp_path / "cvat" / "JPEGImages" / "frame_000001.jpg").read_bytes()
    # the summary ends with the class pixel frequencies
    after_summary = run.output.split("converted 6")[-1]
    assert "background" in after_summary and "ok:" in after_summary
    # the same seed gives the same split; another seed may not, and is recorded
    again = prepare(tmp_path / "cvat", tmp_path / "data", name="again")
    assert UnifiedDataset(tmp_path / "data" / "again").split_ids("val") == val, again.output
    other = prepare(tmp_path / "cvat", tmp_path / "data", "--seed", "3", "--val-fraction", "0.5", name="other")
    other_meta = UnifiedDataset(tmp_path / "data" / "other").meta
    assert other_meta.splits == {"train": 3, "val": 3} and other_meta.extra["split"]["seed"] == 3, other.output


def test_datumaro_voc_export_palette_masks_and_list_splits(tmp_path: Path) -> None:
    painted = ex.datumaro_voc_export(tmp_path / "dm", n_train=4, n_val=2)
    run = prepare(tmp_path / "dm", tmp_path / "data")
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.splits == {"train": 4, "val": 2}  # trainval (the union) is not a split of its own
    assert dataset.split_ids("val") == ["img4", "img5"]
    assert dataset.meta.extra["split"] == {"kind": "source", "splits": ["train", "val"]}
    got = labels_of(dataset.path)
    assert all(np.array_equal(got[k], painted[k]) for k in painted) and len(got) == 6


@pytest.mark.parametrize("splits", [None, "top", "inside"])
def test_folder_of_images_and_masks(tmp_path: Path, splits: str | None) -> None:
    painted = ex.folder_export(tmp_path / "f", n=5, splits=splits)
    classes = tmp_path / "classes.txt"
    classes.write_text("background\ncat\ndog\n")
    run = prepare(tmp_path / "f", tmp_path / "data", "--classes", str(classes))
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    got = labels_of(dataset.path)
    assert sorted(got) == sorted(painted) and all(np.array_equal(got[k], painted[k]) for k in painted)
    assert "photo_0" in got  # 'photo 0.png' -> a safe id
    if splits:
        assert dataset.split_ids("val") == ["p4"] and dataset.meta.extra["split"]["kind"] == "source"
    else:
        assert dataset.meta.extra["split"]["kind"] == "random" and dataset.meta.splits == {"train": 4, "val": 1}


def test_bmp_and_webp_images_are_stored_as_lossless_png(tmp_path: Path) -> None:
    ex.folder_export(tmp_path / "f", n=3, ext=".bmp")
    classes = tmp_path / "classes.txt"
    classes.write_text("background\ncat\ndog\n")
    assert prepare(tmp_path / "f", tmp_path / "data", "--classes", str(classes)).exit_code == 0
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.image_path("p1").suffix == ".png"
    assert np.array_equal(dataset.read_image("p1"), ex.photo(1))


def _rle(mask: np.ndarray, compressed: bool) -> dict:
    if compressed:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}
    flat = mask.flatten(order="F").astype(np.uint8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    return {"size": list(mask.shape), "counts": counts}


def _coco_scenes() -> tuple[list[tuple[str, list[dict]]], dict[str, np.ndarray]]:
    """Three images: polygons + compressed RLE; crowd + a different-class overlap; no annotations."""
    a, b = ex.painted(1), ex.painted(2)
    first = [{"category_id": 1, "segmentation": [ex.polygon_of(a, 1)]},
             {"category_id": 2, "segmentation": _rle(a == 2, compressed=True)}]  # fmt: skip
    cat_box = b == 1
    overlap = np.zeros_like(cat_box)
    overlap[:20, :20] = True
    second = [{"category_id": 1, "segmentation": _rle(cat_box, compressed=False)},
              {"category_id": 2, "segmentation": _rle(overlap, compressed=True)},
              {"category_id": 2, "segmentation": _rle(b == 2, compressed=False), "iscrowd": 1}]  # fmt: skip
    expected_b = np.zeros(ex.SIZE, dtype=np.uint8)
    expected_b[overlap] = 2
    expected_b[cat_box] = 1
    expected_b[cat_box & overlap] = 255  # claimed by two different classes
    expected_b[b == 2] = 255  # crowd
    return [("s1.jpg", first), ("s2.jpg", second), ("s3.jpg", [])], {"s1": a, "s2": expected_b}


def test_cvat_coco_export_polygons_rle_crowd_overlap_and_empty_images(tmp_path: Path) -> None:
    entries, expected = _coco_scenes()
    export = tmp_path / "cvat_coco"
    categories = [{"id": 1, "name": "cat", "supercategory": ""}, {"id": 2, "name": "dog", "supercategory": ""}]
    ex.write_json(export / "annotations" / "instances_default.json", ex.coco_document(entries, categories))
    for i, (file_name, _) in enumerate(entries):
        ex.save_rgb(export / "images" / file_name, ex.photo(i))
    run = prepare(export, tmp_path / "data")
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.classes == ["background", "cat", "dog"]
    got = labels_of(dataset.path)
    assert sorted(got) == ["s1", "s2"] and all(np.array_equal(got[k], expected[k]) for k in expected)
    assert {s["id"]: s["reason"] for s in run.report["skipped"]}["s3"].startswith("no annotations")
    assert any("iscrowd=1" in note for note in run.report["notes"])
    kept = prepare(export, tmp_path / "data", "--keep-empty", "--crowd-as-class", name="kept")
    got = labels_of(tmp_path / "data" / "kept")
    assert kept.exit_code == 0 and not got["s3"].any()  # all background
    assert (got["s2"][ex.painted(2) == 2] == 2).all()  # the crowd region drawn as its class


def test_label_studio_coco_export_ids_from_zero_and_images_prefix(tmp_path: Path) -> None:
    a = ex.painted(4)
    export = tmp_path / "ls"
    anns = [{"category_id": 0, "segmentation": [ex.polygon_of(a, 1)]},
            {"category_id": 1, "segmentation": [ex.polygon_of(a, 2)]}]  # fmt: skip
    doc = ex.coco_document([("images/1a2b3c4d-leaf.png", anns)], [{"id": 0, "name": "sick"}, {"id": 1, "name": "ok"}])
    ex.write_json(export / "result.json", doc)
    ex.save_rgb(export / "images" / "1a2b3c4d-leaf.png", ex.photo(4))
    run = prepare(export / "result.json", tmp_path / "data", "--val-fraction", "0")
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.classes == ["background", "sick", "ok"] and dataset.meta.splits == {"train": 1}
    assert np.array_equal(dataset.read_label("1a2b3c4d-leaf"), a)


def test_roboflow_coco_export_and_two_json_files(tmp_path: Path) -> None:
    a, b = ex.painted(5), ex.painted(6)
    export = tmp_path / "rf"
    categories = [{"id": 0, "name": "pets"}, {"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    for split, name, label in (("train", "t_jpg.rf.123.jpg", a), ("valid", "v_jpg.rf.456.jpg", b)):
        anns = [{"category_id": 1, "segmentation": [ex.polygon_of(label, 1)]}]
        ex.write_json(export / split / "_annotations.coco.json", ex.coco_document([(name, anns)], categories))
        ex.save_rgb(export / split / name, ex.photo(0))
    run = prepare(export, tmp_path / "data")
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.classes == ["background", "pets", "cat", "dog"]
    assert dataset.meta.splits == {"train": 1, "val": 1}
    assert np.array_equal(dataset.read_label("v_jpg.rf.456"), np.where(b == 1, 2, 0))
    # two JSON files given one by one, images from --images
    images = tmp_path / "all_images"
    for split in ("train", "valid"):
        for file in (export / split).glob("*.jpg"):
            ex.save_rgb(images / file.name, ex.photo(0))
    jsons = [export / "train" / "_annotations.coco.json", export / "valid" / "_annotations.coco.json"]
    both = prepare(jsons, tmp_path / "data", "--images", str(images), name="both")
    assert both.exit_code == 0, both.output
    assert json.loads((tmp_path / "data" / "both" / "meta.json").read_text())["splits"] == {"train": 1, "val": 1}
