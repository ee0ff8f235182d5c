"""Unified format: writer/reader round trip, atomic files, id validation, clear errors."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refine_cli.class_tables import voc_palette
from refine_cli.data.format.unified import (
    FORMAT_VERSION,
    DatasetMeta,
    UnifiedDataset,
    UnifiedWriter,
    bad_label_values,
    png_size,
    validate_sample_id,
    write_file_atomic,
)
from refine_cli.errors import RefineError


def _jpeg(height: int, width: int, seed: int = 0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_voc_palette_known_colours() -> None:
    palette = voc_palette()
    assert palette[0] == (0, 0, 0) and palette[1] == (128, 0, 0) and palette[15] == (192, 128, 128)
    assert palette[255] == (224, 224, 192)


def test_round_trip(tmp_path: Path) -> None:
    writer = UnifiedWriter(tmp_path, "tiny")
    writer.prepare_dirs()
    label = np.array([[0, 1, 2, 255]] * 3, dtype=np.uint8)
    jpeg = _jpeg(3, 4)
    source = tmp_path / "src.JPG"
    source.write_bytes(jpeg)
    writer.copy_image("a", source)
    writer.write_label("a", label, voc_palette(3))
    png = io.BytesIO()
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(png, format="PNG")
    writer.write_image_bytes("b", png.getvalue(), "png")
    writer.write_label("b", np.ones((3, 4), np.uint8), voc_palette(3))
    writer.write_splits({"train": ["a"], "val": ["b"]})
    assert writer.has_sample("a") and not writer.has_sample("c")
    writer.write_meta(
        DatasetMeta(name="tiny", num_classes=3, classes=["bg", "x", "y"], palette=voc_palette(3), splits={"train": 1})
    )
    ds = UnifiedDataset(tmp_path / "tiny")
    assert ds.meta.num_classes == 3 and ds.meta.created and ds.meta.format_version == FORMAT_VERSION
    assert ds.split_ids("train") == ["a"] and ds.splits == ["train", "val"]
    assert ds.image_path("a").name == "a.jpg"  # extension normalised, bytes unchanged
    assert ds.image_path("a").read_bytes() == jpeg
    assert ds.read_image("a").shape == (3, 4, 3) and ds.read_image("b").dtype == np.uint8
    np.testing.assert_array_equal(ds.read_label("a"), label)  # indices, not palette colours
    with Image.open(ds.label_path("a")) as image:
        assert image.mode == "P" and image.getpalette()[3:6] == [128, 0, 0]
    assert png_size(ds.label_path("a")) == (3, 4)
    assert not list((tmp_path / "tiny").rglob("*.part"))
    with pytest.raises(RefineError, match="no split 'test'"):
        ds.split_ids("test")


def test_rewriting_with_other_extension_replaces_image(tmp_path: Path) -> None:
    writer = UnifiedWriter(tmp_path, "tiny")
    writer.prepare_dirs()
    writer.write_image_bytes("a", b"png-bytes", "png")
    writer.write_image_bytes("a", b"jpg-bytes", "jpg")
    assert sorted(p.name for p in writer.images_dir.iterdir()) == ["a.jpg"]


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "a\\b", "x..y", "a b"])
def test_invalid_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_sample_id(bad)


def test_label_must_be_2d_uint8(tmp_path: Path) -> None:
    writer = UnifiedWriter(tmp_path, "tiny")
    with pytest.raises(ValueError, match="2-D uint8"):
        writer.write_label("a", np.zeros((2, 2), np.int32), voc_palette(2))


def test_not_a_dataset_and_incomplete(tmp_path: Path) -> None:
    with pytest.raises(RefineError, match="does not exist"):
        UnifiedDataset(tmp_path / "nothere")
    (tmp_path / "meta.json").write_text("{}")
    with pytest.raises(RefineError, match="is a file, not a dataset folder"):
        UnifiedDataset(tmp_path / "meta.json")
    (tmp_path / "meta.json").unlink()
    with pytest.raises(RefineError, match="not a unified dataset"):
        UnifiedDataset(tmp_path)
    (tmp_path / "labels").mkdir()
    with pytest.raises(RefineError, match="incomplete") as info:
        UnifiedDataset(tmp_path)
    assert "resumes" in (info.value.hint or "")


def test_meta_version_and_fields_checked(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text(json.dumps({"format_version": 99, "name": "x"}))
    with pytest.raises(RefineError, match="format_version 99"):
        UnifiedDataset(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"format_version": FORMAT_VERSION, "name": "x"}))
    with pytest.raises(RefineError, match="lacks the field"):
        UnifiedDataset(tmp_path)


def test_rgb_label_is_rejected(tmp_path: Path) -> None:
    writer = UnifiedWriter(tmp_path, "tiny")
    writer.prepare_dirs()
    writer.write_meta(DatasetMeta(name="tiny", num_classes=2, classes=["a", "b"], palette=voc_palette(2)))
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(writer.label_path("a"))
    with pytest.raises(RefineError, match="mode RGB"):
        UnifiedDataset(tmp_path / "tiny").read_label("a")


@pytest.mark.parametrize(
    ("values", "num_classes", "ignore", "bad"),
    [
        ([0, 1, 20, 255], 21, 255, []),
        ([0, 21, 254, 255], 21, 255, [21, 254]),
        ([0, 3, 3], 3, 255, [3]),
        ([0, 2, 9], 3, 9, []),
        ([], 3, 255, []),
    ],
)
def test_bad_label_values(values: list[int], num_classes: int, ignore: int, bad: list[int]) -> None:
    label = np.array(values, dtype=np.uint8).reshape(1, -1)
    assert bad_label_values(label, num_classes, ignore) == bad


def test_written_files_are_readable_by_others_and_leave_no_temporaries(tmp_path: Path) -> None:
    writer = UnifiedWriter(tmp_path, "ds")  # no prepare_dirs(): the first write creates the folders
    label = np.arange(12, dtype=np.uint8).reshape(3, 4) % 3
    image = writer.write_image_bytes("a", b"jpeg-bytes", "jpg")
    written = writer.write_label("a", label, voc_palette(3))
    umask = os.umask(0)
    os.umask(umask)
    for path in (image, written):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert sorted(p.name for p in (tmp_path / "ds").rglob(".*")) == []
    assert image.read_bytes() == b"jpeg-bytes"
    with Image.open(written) as png:
        assert png.mode == "P" and np.array_equal(np.array(png), label)
    with pytest.raises(ValueError, match="only jpg, jpeg, png"):
        writer.write_image_bytes("b", b"x", "gif")


def test_failed_atomic_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("refine_cli.fileio.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_file_atomic(tmp_path / "x.png", b"data")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_classes": "abc"}, "num_classes must be an integer"),
        ({"num_classes": 0, "classes": [], "palette": []}, "num_classes is 0: it defines no classes"),
        ({"num_classes": 300}, "at most 255 classes"),
        ({"classes": ["a", "b", "c"]}, "classes has 3 names for 2 classes"),
        ({"classes": "ab"}, "classes must be a list of class names"),
        ({"palette": "nonsense"}, "palette must be a list of [r, g, b] colours"),
        ({"palette": [[0, 0, 0], ["x", 0, 0]]}, "palette[1] must be [r, g, b] with integers 0..255"),
        ({"palette": [[0, 0, 0], [0, 0, -1]]}, "palette[1] must be [r, g, b]"),
        ({"palette": [[0, 0, 0]]}, "palette has 1 colours for 2 classes"),
        ({"ignore_index": "255"}, "ignore_index must be an integer 0..255"),
        ({"ignore_index": 1}, "ignore_index 1 collides with a class index"),
        ({"name": 5}, "name must be a str"),
        ({"splits": {"train": -1}}, "splits must map split names to sample counts"),
    ],
)
def test_damaged_meta_fields_are_named(tmp_path: Path, changes: dict, message: str) -> None:
    meta = DatasetMeta(name="tiny", num_classes=2, classes=["a", "b"], palette=voc_palette(2)).to_dict()
    (tmp_path / "meta.json").write_text(json.dumps({**meta, **changes}))
    with pytest.raises(RefineError) as caught:
        UnifiedDataset(tmp_path)
    assert message in caught.value.message and "meta.json" in caught.value.message
