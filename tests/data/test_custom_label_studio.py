"""`refine prepare custom` from a Label Studio JSON export: brushes, polygons, rectangles, ellipses, tasks.

Brush RLEs were made by Label Studio's own encoders (the SDK's `mask2rle` and rle-pack, which the editor
uses; tests/support/label_studio_rle.json, tools/label_studio_rle_fixture.py), so the oracle is the mask
they encode. Polygons and rectangles are checked against pycocotools called here directly on the pixel
coordinates Label Studio's COCO export computes; ellipses against a row-span formula of the ellipse.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from refine_cli.data.convert.custom.label_studio_rle import BadRLE, brush_mask, decode, rle_values
from refine_cli.data.format.unified import UnifiedDataset
from tests.support import own_exports as ox
from tests.support.custom_exports import SIZE, photo, save_rgb
from tests.support.own_exports import prepare_custom

H, W = SIZE


@pytest.mark.parametrize("encoder", ["sdk", "rle_pack", "rle_pack_rgba"])
def test_rle_made_by_label_studio_encoders_decodes_to_the_mask(encoder: str) -> None:
    fixture = ox.rle_fixture()[encoder]
    for name, rle in fixture.items():
        seed, cls = (int(part) for part in name.replace("seed", "").split("_class"))
        assert np.array_equal(brush_mask(rle, H, W), ox.painted_mask(seed, cls)), name


def test_rle_that_does_not_fit_the_image_or_is_cut_is_refused() -> None:
    rle = ox.rle_fixture()["sdk"]["seed30_class1"]
    with pytest.raises(BadRLE, match="holds 12288 values, not the 3072"):
        brush_mask(rle, 24, 32)
    with pytest.raises(BadRLE, match="ends after"):
        decode(rle_values(rle[: len(rle) // 2]), H * W * 4)
    forged = [255, 255, 255, 255] + rle[4:]  # claims 4 billion values: refused before allocating them
    with pytest.raises(BadRLE, match="holds 4294967295 values"):
        decode(rle_values(forged), H * W * 4)
    with pytest.raises(BadRLE, match="byte values"):
        rle_values([1, 2, 300])


def _coco_fill(points_px: list[float]) -> np.ndarray:
    with warnings.catch_warnings():  # pycocotools' numpy-2 "copy keyword" DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([points_px], H, W))).astype(bool)


def _percent(points_px: list[tuple[float, float]]) -> list[list[float]]:
    return [[x / W * 100, y / H * 100] for x, y in points_px]


def _ellipse_rows(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Axis-aligned ellipse: in row y the pixel centres within cx +- rx * sqrt(1 - ((y + .5 - cy) / ry)^2)."""
    mask = np.zeros(SIZE, dtype=bool)
    for y in range(H):
        t = 1 - ((y + 0.5 - cy) / ry) ** 2
        if t >= 0:
            half = rx * math.sqrt(t)
            xs = np.arange(W) + 0.5
            mask[y] = (xs >= cx - half) & (xs <= cx + half)
    return mask


def _export(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Four tasks: upload URL, local-files URL, plain URL (found by name), and one never annotated."""
    rle = ox.rle_fixture()
    media = tmp_path / "media"
    save_rgb(media / "upload" / "3" / "1a2b3c4d-cat.jpg", photo(60))
    save_rgb(media / "photos" / "sub" / "p2.png", photo(61))
    save_rgb(media / "somewhere" / "p3.jpg", photo(62))
    save_rgb(media / "upload" / "3" / "unlabelled.jpg", photo(63))
    expected = {}
    # task 1: two brushes (SDK encoder); the latest non-cancelled annotation wins over an older one
    first = [ox.brush(rle["sdk"]["seed30_class1"], "cat"), ox.brush(rle["sdk"]["seed30_class2"], "dog")]
    older = [ox.brush(rle["sdk"]["seed31_class1"], "dog")]
    cancelled = ox.ls_annotation([], 12, "2024-06-03T00:00:00.000000Z", cancelled=True)
    task1 = ox.ls_task(1, "/data/upload/3/1a2b3c4d-cat.jpg", [ox.ls_annotation(older, 10, "2024-06-01T00:00:00Z"),
                        ox.ls_annotation(first, 11, "2024-06-02T00:00:00.000000Z"), cancelled])  # fmt: skip
    expected["1a2b3c4d-cat"] = ox.painted(30)
    # task 2: an editor brush (rle-pack) overlapped by a polygon and a rotated rectangle of another class
    triangle = [(2.0, 3.0), (40.0, 10.0), (12.0, 40.0)]
    rect = ox.ls_result("rectanglelabels", {"x": 50.0, "y": 10.0, "width": 25.0, "height": 20.0, "rotation": 90.0,
                                            "rectanglelabels": ["dog"]})  # fmt: skip
    polygon = ox.ls_result("polygonlabels", {"points": _percent(triangle), "polygonlabels": ["dog"]})
    task2_results = [ox.brush(rle["rle_pack"]["seed31_class1"], "cat"), polygon, rect]
    truth = ox.ls_annotation(task2_results, 20, "2024-01-01T00:00:00.000000Z", truth=True)
    newer = ox.ls_annotation([], 21, "2024-09-01T00:00:00.000000Z")
    task2 = ox.ls_task(2, "/data/local-files/?d=photos%2Fsub%2Fp2.png", [truth, newer])
    cat = ox.painted_mask(31, 1)
    # the rectangle turned 90 degrees clockwise about its top-left corner (32, 4.8): x 22.4-32, y 4.8-20.8
    dog = _coco_fill([c for p in triangle for c in p]) | _coco_fill([22.4, 4.8, 32.0, 4.8, 32.0, 20.8, 22.4, 20.8])
    expected["p2"] = np.select([cat & dog, cat, dog], [255, 1, 2], 0).astype(np.uint8)
    # task 3: a coloured rle-pack brush, an ellipse, and the same ellipse turned 90 degrees (radii swapped)
    ellipse = {"x": 50.0, "y": 50.0, "radiusX": 20.0, "radiusY": 25.0, "ellipselabels": ["cat"]}
    turned = {**ellipse, "x": 15.0, "y": 30.0, "radiusX": 25.0 * H / W, "radiusY": 20.0 * W / H, "rotation": 90.0}
    task3_results = [ox.brush(rle["rle_pack_rgba"]["seed30_class2"], "dog"), ox.ls_result("ellipselabels", ellipse),
                     ox.ls_result("ellipselabels", turned)]  # fmt: skip
    task3 = ox.ls_task(3, "https://bucket.s3.amazonaws.com/uploads/p3.jpg", [ox.ls_annotation(task3_results, 30, "x")])
    dog3 = ox.painted_mask(30, 2)
    cat3 = _ellipse_rows(32.0, 24.0, 12.8, 12.0) | _ellipse_rows(9.6, 14.4, 12.8, 12.0)  # turned: same shape
    expected["p3"] = np.select([cat3 & dog3, cat3, dog3], [255, 1, 2], 0).astype(np.uint8)
    task4 = ox.ls_task(4, "/data/upload/3/unlabelled.jpg", [])
    export = tmp_path / "project-3-at-2024-06-05.json"
    export.write_text(json.dumps([task1, task2, task3, task4], indent=2), encoding="utf-8")
    return export, expected


def test_label_studio_export_every_region_kind(tmp_path: Path) -> None:
    export, expected = _export(tmp_path)
    run = prepare_custom(export, tmp_path / "data", "--images", str(tmp_path / "media"), "--val-fraction", "0")
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.classes == ["background", "cat", "dog"]
    assert sorted(dataset.label_ids()) == sorted(expected)
    for name, label in expected.items():
        assert np.array_equal(dataset.read_label(name), label), name
    assert {s["id"]: s["reason"] for s in run.report["skipped"]}["unlabelled"].endswith("has no finished annotation")
    assert any("1 task(s) have no finished annotation" in note for note in run.report["notes"])
    image = tmp_path / "media" / "upload" / "3" / "1a2b3c4d-cat.jpg"
    assert dataset.image_path("1a2b3c4d-cat").read_bytes() == image.read_bytes()


def test_label_studio_classes_file_orders_and_maps(tmp_path: Path) -> None:
    export, expected = _export(tmp_path)
    classes = tmp_path / "classes.txt"
    classes.write_text("dog\ncat\nbackground\n")
    run = prepare_custom(export, tmp_path / "data", "--images", str(tmp_path / "media"), "--classes", str(classes))
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.classes == ["background", "dog", "cat"]
    p3 = expected["p3"].astype(np.int64)
    swapped = np.select([p3 == 1, p3 == 2], [2, 1], p3).astype(np.uint8)
    assert np.array_equal(dataset.read_label("p3"), swapped)
