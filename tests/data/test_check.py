"""`check_dataset` and `refine check`: each kind of damage is found and named; a good dataset passes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from refine_cli.class_tables import voc_palette
from refine_cli.cli.app import app
from refine_cli.data.format.check import check_dataset
from refine_cli.data.format.unified import DatasetMeta, UnifiedWriter


def build_dataset(root: Path, n: int = 6, size: tuple[int, int] = (8, 10), num_classes: int = 3) -> Path:
    """A tiny valid unified dataset: label of sample i is all class i % C except one ignore pixel."""
    writer = UnifiedWriter(root, "tiny")
    writer.prepare_dirs()
    ids = [f"s{i}" for i in range(n)]
    for i, sample_id in enumerate(ids):
        buffer = io.BytesIO()
        Image.fromarray(np.full((*size, 3), (40 * i) % 256, np.uint8)).save(buffer, format="PNG")
        writer.write_image_bytes(sample_id, buffer.getvalue(), "png")
        label = np.full(size, i % num_classes, np.uint8)
        label[0, 0] = 255
        writer.write_label(sample_id, label, voc_palette(num_classes))
    splits = {"train": ids[: n - 2], "val": ids[n - 2 :]}
    writer.write_splits(splits)
    classes = [f"c{k}" for k in range(num_classes)]
    counts = {k: len(v) for k, v in splits.items()}
    writer.write_meta(DatasetMeta("tiny", num_classes, classes, voc_palette(num_classes), splits=counts))
    return writer.path


def test_good_dataset_histogram(tmp_path: Path) -> None:
    path = build_dataset(tmp_path)
    report = check_dataset(path, workers=1)
    assert report.ok, report.problems
    assert report.samples == 6 and report.splits == {"train": 4, "val": 2}
    assert report.class_pixels == [2 * 79, 2 * 79, 2 * 79] and report.ignore_pixels == 6
    assert report.class_images == [2, 2, 2]
    assert report.to_dict()["classes"][1]["fraction"] == pytest.approx(158 / 480)


def test_parallel_matches_serial(tmp_path: Path) -> None:
    path = build_dataset(tmp_path, n=140)
    serial, parallel = check_dataset(path, workers=1), check_dataset(path, workers=2)
    assert serial.class_pixels == parallel.class_pixels and parallel.ok


def _damage(path: Path, kind: str) -> str:
    """Break the dataset one way; return a fragment the report must contain."""
    if kind == "size":
        Image.fromarray(np.zeros((5, 5), np.uint8)).save(path / "labels" / "s1.png")
        return "label " + str(path / "labels" / "s1.png") + " is 5x5 but its image is 10x8"
    if kind == "range":
        Image.fromarray(np.full((8, 10), 7, np.uint8)).save(path / "labels" / "s2.png")
        return "values outside [0, 3) and 255: 7"
    if kind == "missing-label":
        (path / "labels" / "s3.png").unlink()
        return "s3.png has no label"
    if kind == "split-missing":
        (path / "splits" / "val.txt").write_text("s4\ns5\nghost\n")
        return "split 'val' names sample 'ghost'"
    if kind == "count":
        meta = json.loads((path / "meta.json").read_text())
        meta["splits"]["train"] = 5
        (path / "meta.json").write_text(json.dumps(meta))
        return "split 'train' has 4 samples but meta.json says 5"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["size", "range", "missing-label", "split-missing", "count"])
def test_damage_is_found(tmp_path: Path, kind: str) -> None:
    path = build_dataset(tmp_path)
    expected = _damage(path, kind)
    report = check_dataset(path)
    assert not report.ok
    assert any(expected in problem for problem in report.problems), report.problems


def test_cli_check_ok_and_json(tmp_path: Path) -> None:
    path = build_dataset(tmp_path)
    result = CliRunner().invoke(app, ["check", str(path), "--json", str(tmp_path / "r.json"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "c1" in result.output and "ok" in result.output.lower()
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["ok"] is True and data["splits"] == {"train": 4, "val": 2}


def test_cli_check_problem_exit_2(tmp_path: Path) -> None:
    path = build_dataset(tmp_path)
    _damage(path, "range")
    result = CliRunner().invoke(app, ["check", str(path), "--workers", "1"])
    assert result.exit_code == 2
    assert "values outside" in result.output and "error: " in result.output


def test_cli_check_not_a_dataset(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["check", str(tmp_path)])
    assert result.exit_code == 2 and "not a unified dataset" in result.output and "Traceback" not in result.output


def test_cli_check_full_decodes_and_finds_a_truncated_image(tmp_path: Path) -> None:
    from tests.support.cli import error_line
    from tests.support.tiny_seg import make_tiny_dataset

    data = make_tiny_dataset(tmp_path, train=2, val=1, size=(32, 32))
    victim = sorted((data / "images").iterdir())[0]
    blob = victim.read_bytes()
    victim.write_bytes(blob[: len(blob) // 2])  # header intact, pixel data cut
    header_only = CliRunner().invoke(app, ["check", str(data), "--workers", "1"])
    assert header_only.exit_code == 0, header_only.output  # the header alone looks fine
    full = CliRunner().invoke(app, ["check", str(data), "--workers", "1", "--full"])
    assert victim.name in error_line(full)
