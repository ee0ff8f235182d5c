"""Class files of own data: every accepted form, background first, file-order indices, and what is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refine_cli.data.convert.custom.class_files import LabelTable, read_class_file
from refine_cli.errors import RefineError

NAMES = ["background", "cat", "dog"]
COLORS = [(0, 0, 0), (250, 50, 83), (51, 221, 255)]
FORMS = {
    "names.txt": ("background\ncat\n\ndog\n", None),
    "rgb.txt": ("# name r g b\nbackground 0 0 0\ncat 250 50 83\ndog 51 221 255\n", COLORS),
    "labelmap.txt": (
        "# label:color_rgb:parts:actions\nbackground:0,0,0::\ncat:250,50,83::\ndog:51,221,255::\n",
        COLORS,
    ),
    "classes.json": (
        '[{"name": "background", "color": [0, 0, 0]}, {"name": "cat", "color": "#fa3253"},'
        ' {"name": "dog", "color": [51, 221, 255]}]',
        COLORS,
    ),  # fmt: skip
    "classes.yaml": (
        "- {name: background, color: [0, 0, 0]}\n- {name: cat, color: [250, 50, 83]}\n"
        "- {name: dog, color: [51, 221, 255]}\n",
        COLORS,
    ),  # fmt: skip
    "names.yaml": ("names:\n  0: background\n  1: cat\n  2: dog\n", None),
}


@pytest.mark.parametrize("file_name", sorted(FORMS))
def test_every_class_file_form(tmp_path: Path, file_name: str) -> None:
    text, colors = FORMS[file_name]
    path = tmp_path / file_name
    path.write_text(text)
    classes = read_class_file(path)
    assert list(classes.names) == NAMES
    assert (list(classes.colors) if classes.colors else None) == colors


def test_multi_word_names_with_colours(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("background 0 0 0\npotted plant 0 64 0\n")
    assert read_class_file(path).names == ("background", "potted plant")


def test_background_goes_first_and_index_masks_keep_the_file_order(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("cat\nbackground\ndog\n")
    classes = read_class_file(path)
    assert classes.names == ("background", "cat", "dog")
    table = LabelTable.of(classes)
    mask = np.array([[0, 1, 2, 255]], dtype=np.uint8)  # file order: 0 cat, 1 background, 2 dog
    assert table.to_label(mask, "m.png").tolist() == [[1, 0, 2, 255]]


def test_colour_masks_map_through_the_colours(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("dog 51 221 255\nbackground 0 0 0\n")
    table = LabelTable.of(read_class_file(path), void_colors=[(224, 224, 192)])
    mask = np.array([[[0, 0, 0], [51, 221, 255], [224, 224, 192]]], dtype=np.uint8)
    assert table.to_label(mask, "m.png").tolist() == [[0, 1, 255]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cat\ncat\n", "more than once"),
        ("background 0 0 0\ncat\n", "colours for some classes but not for cat"),
        ("a 1 2 3\nb 1 2 3\n", "the same colour"),
        ("# only a comment\n", "names no classes"),
        ("a:1,2::\n", "is not a colour"),
        ("\n".join(f"c{i}" for i in range(255)), "at most 254"),
    ],
)
def test_bad_class_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(RefineError, match=message):
        read_class_file(path)


def test_bad_json_class_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"classes": [{"colour": [1, 2, 3]}]}')
    with pytest.raises(RefineError, match="is not a class"):
        read_class_file(path)


def test_split_rules() -> None:
    from refine_cli.data.convert.custom.converter import decide_splits

    source = {"train": ["a", "b"], "val": ["c"], "test": ["d"]}
    assert decide_splits(source, 0.5, 0) == (source, {"kind": "source", "splits": ["test", "train", "val"]})
    splits, record = decide_splits({"default": ["x", "y"], "val": ["z"]}, 0.1, 0)
    assert splits["train"] == ["x", "y"] and splits["val"] == ["z"]
    ids = [f"s{i:02d}" for i in range(20)]
    splits, record = decide_splits({"default": ids, "test": ["t"]}, 0.25, 7)
    assert len(splits["val"]) == 5 and sorted(splits["train"] + splits["val"]) == ids and splits["test"] == ["t"]
    assert record == {"kind": "random", "seed": 7, "val_fraction": 0.25, "from": ["default"]}
    assert decide_splits({"default": ids}, 0.25, 7)[0]["val"] == splits["val"]  # reproducible from the seed
    assert decide_splits({"all": ids}, 0.0, 0)[0] == {"train": ids}
