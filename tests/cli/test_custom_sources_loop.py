"""Each new own-data source end to end through the CLI: prepare -> train (one step) -> eval.

The exports are the tools' own layouts (tests/support/own_exports.py); what is checked is what only a
working chain gives: the dataset holds the source's classes, training writes a checkpoint that knows
them, and eval scores that checkpoint on the prepared val split.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.models.checkpoint import load_checkpoint
from tests.support import own_exports as ox
from tests.support.custom_exports import photo, save_rgb

FAST = ["--model", "lw-refinenet-mobilenetv2", "--no-pretrained-backbone", "--crop", "32", "--batch", "2",
        "--workers", "0", "--device", "cpu", "--set", "data.min_short_side=null", "--iters", "1"]  # fmt: skip

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]


def _labelme(root: Path) -> tuple[list[str], list[str]]:
    for name, shapes in ox.labelme_scenes().items():
        for copy in range(2):
            save_rgb(root / f"{name}{copy}.jpg", photo(copy))
            ox.labelme_file(root / f"{name}{copy}.json", shapes, f"{name}{copy}.jpg")
    return [str(root)], ["_background_", "cat", "dog"]


def _label_studio(root: Path) -> tuple[list[str], list[str]]:
    rle = ox.rle_fixture()["sdk"]
    tasks = []
    for number, (name, code) in enumerate(rle.items(), 1):
        save_rgb(root / "media" / "upload" / "1" / f"{name}.jpg", photo(number))
        label = "cat" if name.endswith("class1") else "dog"
        results = [ox.brush(code, label)]
        tasks.append(ox.ls_task(number, f"/data/upload/1/{name}.jpg", [ox.ls_annotation(results, number * 10, "x")]))
    (root / "export.json").write_text(json.dumps(tasks), encoding="utf-8")
    return [str(root / "export.json"), "--images", str(root / "media")], ["background", "cat", "dog"]


def _yolo(root: Path) -> tuple[list[str], list[str]]:
    ox.yolo_roboflow_export(root)
    return [str(root / "data.yaml")], ["background", "cat", "dog"]


def _cityscapes(root: Path) -> tuple[list[str], list[str]]:
    ox.cityscapes_export(root)
    (root.parent / "classes.txt").write_text("background\nroad\ncar\nsky\n")
    return [str(root), "--classes", str(root.parent / "classes.txt")], ["background", "road", "car", "sky"]


@pytest.mark.parametrize("source", [_labelme, _label_studio, _yolo, _cityscapes], ids=lambda f: f.__name__[1:])
def test_prepare_train_eval(tmp_path: Path, source) -> None:  # noqa: ANN001
    args, classes = source(tmp_path / "export")
    runner = CliRunner()
    prepared = runner.invoke(app, ["prepare", "custom", "mine", "--from", *args, "--root", str(tmp_path), "-j", "1",
                                   "--val-fraction", "0.34"])  # fmt: skip
    assert prepared.exit_code == 0, prepared.output
    meta = json.loads((tmp_path / "mine" / "meta.json").read_text())
    assert meta["classes"] == classes and meta["splits"].get("val", 0) >= 1
    trained = runner.invoke(app, ["train", "--data", str(tmp_path / "mine"), "--out", str(tmp_path / "run"), *FAST])
    assert trained.exit_code == 0, trained.output
    checkpoint = tmp_path / "run" / "best.pt"
    assert load_checkpoint(checkpoint).classes == classes
    evaluated = runner.invoke(app, ["eval", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "mine"),
                                    "--device", "cpu", "--json", str(tmp_path / "eval.json")])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["num_images"] == meta["splits"]["val"] and [c["name"] for c in report["per_class"]] == classes
