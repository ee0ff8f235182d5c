"""`--map OLD=NEW` / `--map-file`: rename, merge, ignore and background, for mask and annotation sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refine_cli.data.convert.custom.class_files import make_class_list
from refine_cli.data.convert.custom.class_map import apply_map, parse_map
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.errors import RefineError
from tests.support import custom_exports as ex
from tests.support.own_exports import prepare_custom


def test_rename_merge_ignore_and_the_class_table(tmp_path: Path) -> None:
    painted = ex.cvat_voc_export(tmp_path / "cvat", n=3)
    renamed = prepare_custom(tmp_path / "cvat", tmp_path / "data", "--map", "cat=feline", name="renamed")
    assert renamed.exit_code == 0, renamed.output
    meta = UnifiedDataset(tmp_path / "data" / "renamed").meta
    assert meta.classes == ["background", "feline", "dog"] and meta.palette[1] == [250, 50, 83]  # cat's colour kept
    assert meta.extra["class_map"] == {"cat": "feline"} and meta.extra["source_classes"] == ["background", "cat", "dog"]
    table = renamed.output.split("classes")[-1]
    assert "feline" in table and "(250, 50, 83)" in table and "--map: cat=feline" in table
    merged = prepare_custom(tmp_path / "cvat", tmp_path / "data", "--map", "dog=cat", name="merged")
    dataset = UnifiedDataset(tmp_path / "data" / "merged")
    assert merged.exit_code == 0 and dataset.meta.classes == ["background", "cat"]
    assert dataset.meta.palette == [[0, 0, 0], [250, 50, 83]]
    assert all(np.array_equal(dataset.read_label(k), np.minimum(v, 1)) for k, v in painted.items())
    ignored = prepare_custom(tmp_path / "cvat", tmp_path / "data", "--map", "dog=255", name="ignored")
    dataset = UnifiedDataset(tmp_path / "data" / "ignored")
    assert ignored.exit_code == 0 and dataset.meta.classes == ["background", "cat"]
    assert all(np.array_equal(dataset.read_label(k), np.where(v == 2, 255, v)) for k, v in painted.items())


def test_map_to_background_and_a_map_file(tmp_path: Path) -> None:
    painted = ex.cvat_voc_export(tmp_path / "cvat", n=2)
    map_file = tmp_path / "map.yaml"
    map_file.write_text("dog: background\ncat: kitty\n", encoding="utf-8")
    run = prepare_custom(tmp_path / "cvat", tmp_path / "data", "--map-file", str(map_file))
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.classes == ["background", "kitty"]
    assert all(np.array_equal(dataset.read_label(k), np.where(v == 2, 0, v)) for k, v in painted.items())


def test_merged_classes_do_not_conflict_where_they_overlap(tmp_path: Path) -> None:
    """COCO marks pixels claimed by two different classes 255; merged first, car and truck are one class."""
    car, truck, bike = np.zeros(ex.SIZE, bool), np.zeros(ex.SIZE, bool), np.zeros(ex.SIZE, bool)
    car[5:20, 5:30], truck[10:30, 20:40], bike[35:45, 50:60] = True, True, True
    anns = [{"category_id": c, "segmentation": [ex.polygon_of(m.astype(np.uint8), 1)]}
            for c, m in ((1, car), (2, truck), (3, bike))]  # fmt: skip
    categories = [{"id": 1, "name": "car"}, {"id": 2, "name": "truck"}, {"id": 3, "name": "bicycle"}]
    ex.write_json(tmp_path / "coco" / "instances_default.json", ex.coco_document([("a.jpg", anns)], categories))
    ex.save_rgb(tmp_path / "coco" / "a.jpg", ex.photo(0))
    plain = prepare_custom(tmp_path / "coco" / "instances_default.json", tmp_path / "data", name="plain")
    plain_label = UnifiedDataset(tmp_path / "data" / "plain").read_label("a")
    assert plain.exit_code == 0 and (plain_label[car & truck] == 255).all()
    run = prepare_custom(tmp_path / "coco" / "instances_default.json", tmp_path / "data", "--map", "truck=car",
                  "--map", "bicycle=ignore")  # fmt: skip
    assert run.exit_code == 0, run.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    expected = np.select([car | truck, bike], [1, 255], 0).astype(np.uint8)
    assert dataset.meta.classes == ["background", "car"] and np.array_equal(dataset.read_label("a"), expected)


def test_a_map_naming_no_class_lists_the_classes(tmp_path: Path) -> None:
    ex.cvat_voc_export(tmp_path / "cvat", n=2)
    run = prepare_custom(tmp_path / "cvat", tmp_path / "data", "--map", "horse=dog")
    assert run.exit_code == 2
    assert "the class map names 'horse', which is not a class; the classes are 'background', 'cat', 'dog'" in run.output
    assert not (tmp_path / "data" / "own" / "meta.json").exists()


@pytest.mark.parametrize(
    ("pairs", "file_text", "message"),
    [
        (["cat"], None, "--map 'cat' is not OLD=NEW"),
        (["cat=dog", "cat=bird"], None, "sends 'cat' to both 'dog' and 'bird'"),
        (["cat=a\x1b[31mb"], None, "contains control characters"),
        ([], '{"cat": ["dog"]}', "map file"),
        ([], "[1, 2]", "map file"),
    ],
)
def test_bad_maps_are_one_line(tmp_path: Path, pairs: list[str], file_text: str | None, message: str) -> None:
    map_file = None
    if file_text is not None:
        map_file = tmp_path / "map.json"
        map_file.write_text(file_text)
    with pytest.raises(RefineError, match=message.replace("[", r"\[")):
        classes = make_class_list([("background", None), ("cat", None), ("dog", None)], "x")
        apply_map(classes, parse_map(pairs, map_file))


def test_the_benchmark_converters_take_no_map() -> None:
    from typer.testing import CliRunner

    from refine_cli.cli.app import app

    result = CliRunner().invoke(app, ["prepare", "voc", "--map", "cat=dog"])
    assert result.exit_code == 2 and "No such option" in " ".join(result.output.split())
