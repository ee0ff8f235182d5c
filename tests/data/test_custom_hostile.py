"""Hostile and clumsy own-data exports: every refusal is one line naming the file, nothing is half-written.

Paths that leave the export, malformed or wrongly shaped JSON, shapes with too few points, NaN and absurd
coordinates, labels in no class, RLE of the wrong length, duplicate names and ids, images over the pixel
limit; for COCO also degenerate polygons (a note instead of silence) and two images with one id.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from refine_cli.data.convert.custom.export_paths import OutsideExport, inside_export
from refine_cli.data.convert.custom.json_shapes import check_shape, read_json
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.errors import RefineError
from tests.support import custom_exports as ex
from tests.support import own_exports as ox
from tests.support.own_exports import one_line_error, prepare_custom

SECRET = (7, 7, 7)


def _secret(tmp_path: Path) -> Path:
    """An image outside every export: it must never be copied into a dataset."""
    return ex.save_rgb(tmp_path / "private" / "secret.png", np.full((*ex.SIZE, 3), SECRET, dtype=np.uint8))


def _no_secret_in(root: Path) -> bool:
    images = [p for p in root.rglob("images/*") if p.is_file()]
    return not any(p.name.startswith("secret") for p in images)


def test_inside_export_rule() -> None:
    root = Path("/data/export")
    assert inside_export(root, root / "ann", "../images/a.jpg", "x") == root / "images" / "a.jpg"
    assert inside_export(root, root, "/data/export/images/a.jpg", "x") == root / "images" / "a.jpg"
    assert inside_export(root, root / "ann", "..\\images\\b.jpg", "x") == root / "images" / "b.jpg"  # Windows
    for named in ("../../secret.png", "/home/me/secret.png", "C:\\Users\\me\\secret.png", "a/../../../x.png", ""):
        with pytest.raises(OutsideExport):
            inside_export(root, root / "ann", named, "x")


def test_json_shape_and_depth_errors_name_the_file_and_field(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"shapes": {"type": "array", "items": {"type": "object",
              "properties": {"label": {"type": "string"}}}}}}  # fmt: skip
    with pytest.raises(RefineError, match=r"^f.json: shapes\[1\].label must be string$"):
        check_shape({"shapes": [{"label": "a"}, {"label": 3}]}, schema, "f.json")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(RefineError, match="nests lists or objects too deeply"):
        read_json(deep)
    cut = tmp_path / "cut.json"
    cut.write_text('{"shapes": [{"label": "a"')
    with pytest.raises(RefineError, match=r"cut.json is not valid JSON: .* at line 1 column"):
        read_json(cut)


# --- COCO (issue: paths, shapes, ids, degenerate polygons) ----------------------------------------------


def _coco(tmp_path: Path, file_names: list[str], **changes: object) -> Path:
    a = ex.painted(1)
    entries = [(name, [{"category_id": 1, "segmentation": [ex.polygon_of(a, 1)]}]) for name in file_names]
    doc = {**ex.coco_document(entries, [{"id": 1, "name": "cat"}]), **changes}
    for name in file_names:
        if not name.startswith(("/", "..")):
            ex.save_rgb(tmp_path / "coco" / "images" / Path(name).name, ex.photo(1))
    return ex.write_json(tmp_path / "coco" / "annotations" / "instances_default.json", doc)


def test_coco_file_names_that_leave_the_export_are_refused(tmp_path: Path) -> None:
    secret = _secret(tmp_path)
    other = secret.with_name("secret_2.png")
    other.write_bytes(secret.read_bytes())
    _coco(tmp_path, ["ok.jpg", "../../private/secret.png", str(other)])
    failed = prepare_custom(tmp_path / "coco", tmp_path / "data")
    line = one_line_error(failed.output)
    assert failed.exit_code == 2 and "2 problem(s)" in line and "'../../private/secret.png' leads outside" in line
    assert f"is the absolute path '{other}' outside the export folder" in line
    skipped = prepare_custom(tmp_path / "coco", tmp_path / "data", "--skip-bad")
    assert skipped.exit_code == 0 and UnifiedDataset(tmp_path / "data" / "own").label_ids() == ["ok"]
    assert _no_secret_in(tmp_path / "data")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"categories": [{"id": "1", "name": "cat"}]}, "categories[0].id must be integer"),
        ({"annotations": {"id": 1}}, "annotations must be array"),
        ({"images": [{"id": 1, "file_name": 5}]}, "images[0].file_name must be string"),
    ],
)
def test_coco_fields_of_the_wrong_type_are_one_line(tmp_path: Path, change: dict, message: str) -> None:
    _coco(tmp_path, ["a.jpg"], **change)
    failed = prepare_custom(tmp_path / "coco", tmp_path / "data")
    assert failed.exit_code == 2 and message in one_line_error(failed.output)


def test_coco_two_images_with_one_id_and_degenerate_polygons(tmp_path: Path) -> None:
    path = _coco(tmp_path, ["a.jpg", "b.jpg"])
    doc = json.loads(path.read_text())
    doc["images"][1]["id"] = doc["images"][0]["id"]
    path.write_text(json.dumps(doc))
    failed = prepare_custom(tmp_path / "coco", tmp_path / "data")
    assert failed.exit_code == 2 and "2 images have the id 1" in one_line_error(failed.output)
    doc["images"][1]["id"] = 2
    doc["annotations"][1]["segmentation"].append([1.0, 1.0, 5.0, 5.0])  # two points: pycocotools would read a box
    path.write_text(json.dumps(doc))
    noted = prepare_custom(tmp_path / "coco", tmp_path / "data")
    assert noted.exit_code == 0, noted.output
    assert any("1 polygon(s) have fewer than 3 points" in note for note in noted.report["notes"])


# --- labelme -------------------------------------------------------------------------------------------


def _labelme(tmp_path: Path, shapes: list[dict], image_path: str = "a.jpg") -> Path:
    ex.save_rgb(tmp_path / "lm" / "a.jpg", ex.photo(1))
    ox.labelme_file(tmp_path / "lm" / "a.json", shapes, image_path)
    return tmp_path / "lm"


CAT = [[2.0, 2.0], [20.0, 3.0], [10.0, 20.0]]


@pytest.mark.parametrize(
    ("shapes", "text", "message"),
    [
        ([ox.shape("cat", CAT[:2])], None, "shape 0 (polygon 'cat') has 2 point(s); a polygon needs at least 3"),
        ([ox.shape("cat", CAT, "circle")], None, "a circle needs 2"),
        ([ox.shape("cat", CAT, "hexagon")], None, "has a shape type labelme does not draw"),
        ([ox.shape("cat", [[1.0, 2.0], [float("nan"), 3.0], [4.0, 5.0]])], None, "has the coordinate nan"),
        ([ox.shape("cat", [[1.0, 2.0], [1e9, 3.0]], "circle")], None, "is absurd for a 64x48 image"),
        ([ox.shape(3, CAT)], None, "shapes[0].label must be string"),
        ([], '{"version": "5.5.0", "shapes": [{"label": "cat", "points": [[1, 2]', "is not valid JSON"),
    ],
)
def test_labelme_refusals(tmp_path: Path, shapes: list[dict], text: str | None, message: str) -> None:
    source = _labelme(tmp_path, shapes)
    if text is not None:
        (source / "a.json").write_text(text)
    failed = prepare_custom(source, tmp_path / "data")
    line = one_line_error(failed.output)
    assert failed.exit_code == 2 and "a.json" in line and message in line, line
    assert not (tmp_path / "data" / "own" / "meta.json").exists()


def test_labelme_image_paths_outside_the_export_are_refused(tmp_path: Path) -> None:
    secret = _secret(tmp_path)
    source = _labelme(tmp_path, [ox.shape("cat", CAT)], "../private/secret.png")
    ox.labelme_file(source / "b.json", [ox.shape("cat", CAT)], str(secret))
    failed = prepare_custom(source, tmp_path / "data")
    line = one_line_error(failed.output)
    assert "imagePath '../private/secret.png' leads outside the export folder" in line
    assert f"imagePath is the absolute path '{secret}' outside" in line and _no_secret_in(tmp_path / "data")


def test_labelme_far_away_points_are_clipped_not_drawn_into_memory(tmp_path: Path) -> None:
    shapes = [ox.shape("cat", [[5.0, 5.0], [1e308, 5.0], [5.0, 40.0]]),
              ox.shape("dog", [[0.0, 44.0], [1e300, 44.0]], "line")]  # fmt: skip
    run = prepare_custom(_labelme(tmp_path, shapes), tmp_path / "data", "--val-fraction", "0")
    assert run.exit_code == 0, run.output
    label = UnifiedDataset(tmp_path / "data" / "own").read_label("a")
    assert (label[6:30, 6:60] == 1).all() and (label[41:47, 0:64] == 2).all()


def test_labelme_labels_in_no_class_and_duplicate_names(tmp_path: Path) -> None:
    source = _labelme(tmp_path, [ox.shape("cat", CAT), ox.shape("zebra", [[30.0, 30.0], [40.0, 40.0]], "rectangle")])
    classes = tmp_path / "classes.txt"
    classes.write_text("_background_\ncat\n")
    failed = prepare_custom(source, tmp_path / "data", "--classes", str(classes))
    assert "1 labelme label(s) are in no class of --classes: 'zebra' in a.json" in one_line_error(failed.output)
    ok = prepare_custom(
        source, tmp_path / "data", "--classes", str(classes), "--unknown-as-ignore", "--val-fraction", "0"
    )
    assert ok.exit_code == 0 and (UnifiedDataset(tmp_path / "data" / "own").read_label("a")[30:41, 30:41] == 255).all()
    ox.labelme_file(source / "sub" / "a.json", [ox.shape("cat", CAT)], "../a.jpg")
    dup = prepare_custom(source, tmp_path / "data", name="dup")
    assert "are two files for one image name" in one_line_error(dup.output)


def test_images_over_the_pixel_limit_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from refine_cli.cli.app import app

    monkeypatch.setenv("REFINE_MAX_PIXELS", "")  # restored after the test: `--max-pixels` below sets it
    source = _labelme(tmp_path, [ox.shape("cat", CAT)])
    args = ["prepare", "custom", "own", "--from", str(source), "--root", str(tmp_path / "data"), "-j", "1"]
    result = CliRunner().invoke(app, ["--max-pixels", "1000", *args])
    assert result.exit_code == 2 and "a.jpg claims 64x48 = 0.0 Mpixel, over the 0.001 Mpixel limit" in result.output


# --- Label Studio --------------------------------------------------------------------------------------


def _ls(tmp_path: Path, url: str, results: list[dict], image_size: tuple[int, int] = ex.SIZE) -> Path:
    ex.save_rgb(tmp_path / "media" / "upload" / "3" / "a.jpg", ex.photo(1, size=image_size))
    export = tmp_path / "export.json"
    export.write_text(json.dumps([ox.ls_task(1, url, [ox.ls_annotation(results, 10, "2024-01-01")])]))
    return export


def test_label_studio_refusals(tmp_path: Path) -> None:
    rle = ox.rle_fixture()["sdk"]["seed30_class1"]
    small = (24, 32)
    export = _ls(tmp_path, "/data/upload/3/a.jpg", [{**ox.brush(rle, "cat"), "original_width": 32,
                                                     "original_height": 24}], image_size=small)  # fmt: skip
    failed = prepare_custom(export, tmp_path / "data", "--images", str(tmp_path / "media"))
    assert "holds 12288 values, not the 3072 of the image" in one_line_error(failed.output)
    _secret(tmp_path)
    export = _ls(tmp_path, "/data/local-files/?d=../private/secret.png", [ox.brush(rle, "cat")])
    failed = prepare_custom(export, tmp_path / "data", "--images", str(tmp_path / "media"))
    assert "'../private/secret.png' leads outside the export folder" in one_line_error(failed.output)
    polygon = ox.ls_result("polygonlabels", {"points": [[1.0, 1.0], [50.0, 50.0]], "polygonlabels": ["cat"]})
    failed = prepare_custom(_ls(tmp_path, "/data/upload/3/a.jpg", [polygon]), tmp_path / "data", "--images",
                     str(tmp_path / "media"))  # fmt: skip
    assert "result 0 (polygonlabels) has 2 point(s); a polygon needs at least 3" in one_line_error(failed.output)
    broken = ox.ls_result("rectanglelabels", {"x": "10", "y": 1, "width": 5, "height": 5, "rectanglelabels": ["cat"]})
    failed = prepare_custom(_ls(tmp_path, "/data/upload/3/a.jpg", [broken]), tmp_path / "data", "--images",
                     str(tmp_path / "media"))  # fmt: skip
    assert "result 0 (rectanglelabels) value: x must be number" in one_line_error(failed.output)
    assert _no_secret_in(tmp_path / "data")


# --- YOLO and Cityscapes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2 0.1 0.1 0.5 0.1 0.5 0.5", "class 2 is not one of the 2 classes"),
        ("0 0.5 0.5 0.2 0.2", "is a box (x y w h), not a polygon"),
        ("0 0.1 0.1 0.5 0.1 0.5", "odd number of coordinates"),
        ("0 0.1 nan 0.5 0.1 0.5 0.5", "has the coordinate nan"),
        ("0 0.1 0.1", "has 1 point"),
    ],
)
def test_yolo_label_lines_that_are_refused(tmp_path: Path, line: str, message: str) -> None:
    ox.yolo_roboflow_export(tmp_path / "rf")
    (tmp_path / "rf" / "train" / "labels" / "t1_jpg.rf.abc.txt").write_text(f"1 0.1 0.1 0.3 0.1 0.3 0.3\n{line}\n")
    failed = prepare_custom(tmp_path / "rf", tmp_path / "data")
    error = one_line_error(failed.output)
    assert "t1_jpg.rf.abc.txt line 2" in error and message in error, error


def test_yolo_list_lines_outside_the_dataset_and_huge_coordinates(tmp_path: Path) -> None:
    expected = ox.yolo_roboflow_export(tmp_path / "rf")
    secret = _secret(tmp_path)
    (tmp_path / "rf" / "val.txt").write_text(f"./valid/images/v0_jpg.rf.abc.jpg\n{secret}\n../private/secret.png\n")
    yaml = (tmp_path / "rf" / "data.yaml").read_text().replace("val: ../valid/images", "val: val.txt")
    (tmp_path / "rf" / "data.yaml").write_text(yaml)
    failed = prepare_custom(tmp_path / "rf", tmp_path / "data")
    line = one_line_error(failed.output)
    assert "2 problem(s)" in line and "val.txt line 2" in line and "val.txt line 3" in line
    (tmp_path / "rf" / "val.txt").write_text("./valid/images/v0_jpg.rf.abc.jpg\n")
    labels = tmp_path / "rf" / "train" / "labels" / "t1_jpg.rf.abc.txt"
    labels.write_text("1 0.625 0.041667 1e30 0.041667 0.9375 0.9375 0.625 0.9375\n")
    run = prepare_custom(tmp_path / "rf", tmp_path / "data")
    assert run.exit_code == 0, run.output
    assert (UnifiedDataset(tmp_path / "data" / "own").read_label("t1_jpg.rf.abc")[10:40, 45:60] == 2).all()
    assert _no_secret_in(tmp_path / "data") and expected


def test_cityscapes_refusals(tmp_path: Path) -> None:
    ox.cityscapes_export(tmp_path / "cs")
    classes = tmp_path / "classes.txt"
    classes.write_text("background\nroad\ncar\nsky\n")
    path = next((tmp_path / "cs").rglob("aachen*_polygons.json"))
    doc = json.loads(path.read_text())
    doc["objects"][1]["polygon"] = doc["objects"][1]["polygon"][:2]
    path.write_text(json.dumps(doc))
    failed = prepare_custom(tmp_path / "cs", tmp_path / "data", "--classes", str(classes))
    assert "object 1 ('car') has 2 point(s); a polygon needs at least 3" in one_line_error(failed.output)
    doc["objects"] = {"label": "car"}
    path.write_text(json.dumps(doc))
    failed = prepare_custom(tmp_path / "cs", tmp_path / "data", "--classes", str(classes))
    assert "objects must be array" in one_line_error(failed.output)
    skipped = prepare_custom(tmp_path / "cs", tmp_path / "data", "--classes", str(classes), "--skip-bad")
    assert skipped.exit_code == 0 and sorted(skipped.report["splits"].values()) == [1, 1]


def test_labels_that_look_like_markup_are_printed_as_text(tmp_path: Path) -> None:
    run = prepare_custom(_labelme(tmp_path, [ox.shape("[/red]cat", CAT)]), tmp_path / "data", "--val-fraction", "0")
    assert run.exit_code == 0 and "internal error" not in run.output, run.output
    assert UnifiedDataset(tmp_path / "data" / "own").meta.classes == ["background", "[/red]cat"]
    assert run.output.count("[/red]cat") >= 3  # the note, the pixel table and the class table


def test_a_hundred_thousand_coco_categories_are_refused_at_once(tmp_path: Path) -> None:
    categories = [{"id": i, "name": f"c{i}"} for i in range(1, 100_001)]
    _coco(tmp_path, ["a.jpg"], categories=categories)
    started = time.perf_counter()
    failed = prepare_custom(tmp_path / "coco", tmp_path / "data")
    assert "has 100001 classes; at most 254 fit" in one_line_error(failed.output)
    assert time.perf_counter() - started < 20  # the duplicate check was quadratic: minutes
