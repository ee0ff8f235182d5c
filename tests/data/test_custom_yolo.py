"""`refine prepare custom` from Ultralytics YOLO segmentation datasets: Roboflow's layout and Ultralytics' own.

The oracle (`own_exports.yolo_fill`) paints each rectangle's pixel span directly: Ultralytics truncates the
scaled vertices to integers and OpenCV fills integer polygons including their edges; the smaller of two
overlapping polygons is on top.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from refine_cli.data.format.unified import UnifiedDataset
from tests.support import own_exports as ox
from tests.support.custom_exports import SIZE, photo, save_rgb
from tests.support.own_exports import prepare_custom


def test_roboflow_yolov8_download(tmp_path: Path) -> None:
    expected = ox.yolo_roboflow_export(tmp_path / "rf")
    run = prepare_custom(tmp_path / "rf" / "data.yaml", tmp_path / "data")
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.classes == ["background", "cat", "dog"] and dataset.meta.extra["source_format"] == "yolo"
    assert dataset.meta.splits == {"train": 2, "val": 1} and dataset.meta.extra["split"]["kind"] == "source"
    for name, label in expected.items():
        assert np.array_equal(dataset.read_label(name), label), name
    assert (dataset.read_label("t0_jpg.rf.abc") == 2).any()  # the smaller dog is drawn over the cat
    assert any("test split '../test/images' does not exist" in note for note in run.report["notes"])
    # the folder holding data.yaml works as --from too
    again = prepare_custom(tmp_path / "rf", tmp_path / "data", name="folder")
    assert again.exit_code == 0 and again.report["splits"] == {"train": 2, "val": 1}, again.output


def test_ultralytics_layout_list_file_missing_and_empty_label_files(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    (root / "cfg").mkdir(parents=True)
    (root / "cfg" / "pets.yaml").write_text(
        "path: ..\ntrain: images/train\nval: val.txt\nnames:\n  0: cat\n  1: dog\n", encoding="utf-8"
    )
    boxes = {"a": [(1, 2, 2, 20, 30)], "b": [], "c": None}  # b: empty label file, c: none at all
    for name, items in boxes.items():
        split = "val" if name == "c" else "train"
        save_rgb(root / "images" / split / f"{name}.png", photo(70 + len(name)))
        if items is not None:
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            text = "\n".join(ox.yolo_box_line(*box) for box in items)
            (root / "labels" / split / f"{name}.txt").write_text(text, encoding="utf-8")
    (root / "val.txt").write_text("./images/val/c.png\n", encoding="utf-8")
    run = prepare_custom(root / "cfg" / "pets.yaml", tmp_path / "data")
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.splits == {"train": 2, "val": 1}
    assert np.array_equal(dataset.read_label("a"), ox.yolo_fill(boxes["a"], [1, 2]))
    assert not dataset.read_label("b").any() and not dataset.read_label("c").any()
    notes = " ".join(run.report["notes"])
    assert "1 image(s) have no label file and are all background (as in Ultralytics): c.png" in notes


def test_merging_yolo_classes_with_map(tmp_path: Path) -> None:
    expected = ox.yolo_roboflow_export(tmp_path / "rf")
    run = prepare_custom(tmp_path / "rf" / "data.yaml", tmp_path / "data", "--map", "dog=cat", "--map", "cat=animal")
    assert run.exit_code == 2 and "which is mapped itself" in run.output
    run = prepare_custom(tmp_path / "rf" / "data.yaml", tmp_path / "data", "--map", "dog=animal", "--map", "cat=animal")
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.classes == ["background", "animal"]
    merged = np.where(expected["t0_jpg.rf.abc"] > 0, 1, 0)
    assert np.array_equal(dataset.read_label("t0_jpg.rf.abc"), merged)
    assert dataset.meta.extra["class_map"] == {"dog": "animal", "cat": "animal"}
    assert SIZE == dataset.read_label("t1_jpg.rf.abc").shape
