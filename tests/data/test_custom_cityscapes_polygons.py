"""`refine prepare custom` from Cityscapes-style polygon JSON, in Cityscapes' own tree and as one flat folder.

The oracle is `own_exports.cityscapes_reference`: cityscapesScripts' json2labelImg drawing (Pillow polygon
fills in file order, deleted objects skipped, `cargroup` drawn as `car`), written out in the test support.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from refine_cli.data.format.unified import UnifiedDataset
from tests.support import own_exports as ox
from tests.support.custom_exports import photo, save_rgb
from tests.support.own_exports import prepare_custom


def test_gtfine_and_leftimg8bit_tree(tmp_path: Path) -> None:
    ids = ox.cityscapes_export(tmp_path / "cs")
    classes = tmp_path / "classes.txt"
    classes.write_text("road\ncar\nsky\nbackground\n")
    run = prepare_custom(tmp_path / "cs", tmp_path / "data", "--classes", str(classes))
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.classes == ["background", "road", "car", "sky"]
    assert dataset.meta.extra["source_format"] == "cityscapes"
    assert dataset.meta.splits == {"train": 2, "val": 1} and dataset.meta.extra["split"]["kind"] == "source"
    assert dataset.split_ids("val") == ["lindau_000000_000021"] and sorted(dataset.label_ids()) == sorted(ids)
    expected = ox.cityscapes_reference(ox.CITY_OBJECTS, {"road": 1, "car": 2, "sky": 3}, background=0)
    assert np.array_equal(dataset.read_label("aachen_000000_000019"), expected)
    assert (expected[9:25, 31:50] == 0).any()  # the deleted car would have covered that
    image = tmp_path / "cs" / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000019_leftImg8bit.png"
    assert dataset.image_path("aachen_000000_000019").read_bytes() == image.read_bytes()


def test_flat_folder_and_classes_without_background(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    for name in ("f1", "f2"):
        ox.cityscapes_file(flat / f"{name}_polygons.json", ox.CITY_OBJECTS)
        save_rgb(flat / f"{name}.jpg", photo(80))
    classes = tmp_path / "classes.txt"
    classes.write_text("road\ncar\nsky\n")
    run = prepare_custom(flat, tmp_path / "data", "--classes", str(classes))
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    expected = ox.cityscapes_reference(ox.CITY_OBJECTS, {"road": 0, "car": 1, "sky": 2}, background=255)
    assert np.array_equal(dataset.read_label("f1"), expected) and (expected == 255).any()
    assert any("no `background`, so pixels no shape covers are ignore (255)" in n for n in run.report["notes"])


def test_classes_are_required_and_the_labels_are_listed(tmp_path: Path) -> None:
    ox.cityscapes_export(tmp_path / "cs")
    run = prepare_custom(tmp_path / "cs", tmp_path / "data")
    assert run.exit_code == 2 and "need --classes; these files use the labels car, cargroup, road, sky" in run.output
