"""`refine prepare custom` from LabelMe JSON: labels pixel for pixel as labelme's own labelme2voc draws them.

The oracle is `own_exports.labelme_reference` (labelme's published rules, one mask per shape); the same
scenes were also checked against labelme 6.3.1's `shapes_to_label` itself (tools/bench_labelme.py does
so on every benchmark run).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from refine_cli.data.format.unified import UnifiedDataset
from tests.support import own_exports as lm
from tests.support.custom_exports import photo, save_rgb
from tests.support.own_exports import prepare_custom

LABELS_TXT = "__ignore__\n_background_\ncat\ndog\n"  # labelme2voc's labels.txt convention
VALUES = {"__ignore__": -1, "_background_": 0, "cat": 1, "dog": 2}


def test_every_shape_type_as_labelme2voc_draws_it(tmp_path: Path) -> None:
    scenes = lm.labelme_export(tmp_path / "lm")
    labels = tmp_path / "labels.txt"
    labels.write_text(LABELS_TXT)
    run = prepare_custom(tmp_path / "lm", tmp_path / "data", "--classes", str(labels), "--val-fraction", "0")
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.classes == ["_background_", "cat", "dog"] and dataset.meta.extra["source_format"] == "labelme"
    for name, shapes in scenes.items():
        expected = lm.labelme_reference(shapes, VALUES)
        assert np.array_equal(dataset.read_label(name), expected), name
    assert {0, 1, 2, 255} <= set(np.unique(dataset.read_label("a")).tolist())  # _background_ and __ignore__ drawn
    # `a` names a JPEG beside it: copied byte for byte; `b` embeds a PNG (its imagePath names no file): stored as is
    assert dataset.image_path("a").read_bytes() == (tmp_path / "lm" / "a.jpg").read_bytes()
    embedded = base64.b64decode(json.loads((tmp_path / "lm" / "b.json").read_text())["imageData"])
    assert dataset.image_path("b").read_bytes() == embedded and np.array_equal(dataset.read_image("b"), photo(41))


def test_without_classes_background_and_the_labels_sorted(tmp_path: Path) -> None:
    scenes = lm.labelme_export(tmp_path / "lm")
    for shape in scenes["a"]:  # a label that sorts before the others and is only in one file
        shape["label"] = "ant" if shape["label"] == "dog" else shape["label"]
    lm.labelme_file(tmp_path / "lm" / "a.json", scenes["a"], "a.jpg")
    run = prepare_custom(tmp_path / "lm", tmp_path / "data")
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.classes == ["_background_", "ant", "cat", "dog"]
    assert any("classes from the labelme labels, sorted: _background_, ant, cat, dog" in n for n in run.report["notes"])
    values = {"__ignore__": -1, "_background_": 0, "ant": 1, "cat": 2, "dog": 3}
    assert np.array_equal(dataset.read_label("a"), lm.labelme_reference(scenes["a"], values))
    assert np.array_equal(dataset.read_label("b"), lm.labelme_reference(scenes["b"], values))


def test_a_rotated_phone_photo_is_stored_as_labelme_shows_it(tmp_path: Path) -> None:
    """labelme applies the EXIF orientation of imagePath; its points are on the rotated picture."""
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 64x48, shown 48x64
    buffer = io.BytesIO()
    Image.fromarray(photo(3)).save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "phone.jpg").write_bytes(buffer.getvalue())
    shapes = [lm.shape("cat", [[2.0, 40.0], [30.0, 62.0]], "rectangle")]  # only inside the shown 48x64 picture
    doc = json.loads(lm.labelme_file(tmp_path / "lm" / "phone.json", shapes, "phone.jpg").read_text())
    doc["imageHeight"], doc["imageWidth"] = 64, 48
    (tmp_path / "lm" / "phone.json").write_text(json.dumps(doc))
    run = prepare_custom(tmp_path / "lm", tmp_path / "data", "--val-fraction", "0")
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    shown = np.array(ImageOps.exif_transpose(Image.open(tmp_path / "lm" / "phone.jpg")).convert("RGB"))
    assert dataset.image_path("phone").suffix == ".png" and np.array_equal(dataset.read_image("phone"), shown)
    assert np.array_equal(dataset.read_label("phone"), lm.labelme_reference(shapes, {"cat": 1}, size=(64, 48)))


def test_split_folders_and_a_second_run_resumes(tmp_path: Path) -> None:
    for split, names in (("train", ["t1", "t2"]), ("val", ["v1"])):
        for name in names:
            save_rgb(tmp_path / "lm" / split / f"{name}.png", photo(len(name)))
            lm.labelme_file(tmp_path / "lm" / split / f"{name}.json", lm.labelme_scenes()["a"], f"{name}.png")
    first = prepare_custom(tmp_path / "lm", tmp_path / "data")
    assert first.exit_code == 0 and first.report["splits"] == {"train": 2, "val": 1}, first.output
    assert UnifiedDataset(tmp_path / "data" / "own").meta.extra["split"]["kind"] == "source"
    again = prepare_custom(tmp_path / "lm", tmp_path / "data")
    assert again.report["reused"] == 3 and again.report["converted"] == 0


def test_background_shapes_match_a_class_list_that_says_background(tmp_path: Path) -> None:
    scenes = lm.labelme_export(tmp_path / "lm")
    classes = tmp_path / "classes.txt"
    classes.write_text("background\ncat\ndog\n__ignore__\n")  # refine's spelling, __ignore__ anywhere
    run = prepare_custom(tmp_path / "lm", tmp_path / "data", "--classes", str(classes), "--val-fraction", "0")
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.classes == ["background", "cat", "dog"]
    assert np.array_equal(dataset.read_label("a"), lm.labelme_reference(scenes["a"], VALUES))
