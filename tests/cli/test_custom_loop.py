"""Own data end to end through the CLI: a CVAT export -> prepare custom -> train -> eval -> predict.

Also the own-data training defaults, the rare-class note and the class-weighted loss.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.engine.train.distributed import DistContext
from refine_cli.engine.train.own_data import balanced_class_weights, own_data_defaults
from refine_cli.engine.train.step import TrainStep
from refine_cli.models.checkpoint import load_checkpoint
from tests.support import custom_exports as ex

FAST = ["--model", "lw-refinenet-mobilenetv2", "--no-pretrained-backbone", "--crop", "32", "--batch", "2",
        "--workers", "0", "--device", "cpu", "--set", "data.min_short_side=null"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_cvat_export_to_predictions(tmp_path: Path) -> None:
    ex.cvat_voc_export(tmp_path / "cvat", n=6)
    prepared = _run("prepare", "custom", "pets", "--from", str(tmp_path / "cvat"), "--root", str(tmp_path), "-j", "1")
    assert prepared.exit_code == 0, prepared.output
    data = tmp_path / "pets"
    assert _run("check", str(data)).exit_code == 0
    trained = _run("train", "--data", str(data), "--out", str(tmp_path / "run"), *FAST, "--iters", "2",
                   "--class-weights", "auto", "--json", str(tmp_path / "train.json"))  # fmt: skip
    assert trained.exit_code == 0, trained.output
    text = " ".join(trained.output.split())
    assert (
        "own data, no --recipe: the from-scratch recipe sized to 5 training images, crop 32 (all 48x64), run "
        "for --iters 2 (instead of" in text
    )
    config = load_checkpoint(tmp_path / "run" / "best.pt").train_config
    assert config["recipe"] == "own data: from-scratch for 5 images" and config["optim"]["schedule"] == "poly"
    assert config["model"]["pretrained_backbone"] is False and config["model"]["freeze_bn"] is False
    # 5 images x 48x64: background 80 % of the pixels -> median frequency balancing down-weights it
    assert config["train"]["class_weights"][0] < 0.2 and config["train"]["class_weights"][1:] == [1.0, 1.0]
    evaluated = _run("eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--data", str(data), "--device",
                     "cpu", "--json", str(tmp_path / "eval.json"))  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["num_images"] == 1 and 0 <= report["miou"] <= 1
    best = str(tmp_path / "run" / "best.pt")
    predicted = _run("predict", str(tmp_path / "cvat" / "JPEGImages"), "--checkpoint", best,
                     "--out", str(tmp_path / "pred"), "--device", "cpu")  # fmt: skip
    assert predicted.exit_code == 0, predicted.output
    outputs = sorted(p.name for p in (tmp_path / "pred").glob("*.png"))
    assert outputs == [f"frame_{i:06d}.png" for i in range(6)]
    label = np.array(Image.open(tmp_path / "pred" / "frame_000000.png"))
    assert label.shape == ex.SIZE and label.max() < 3


def test_own_data_defaults_scale_the_lw_recipe_and_note_rare_classes(tmp_path: Path) -> None:
    ex.cvat_voc_export(tmp_path / "cvat", n=4)
    for i in range(4):  # the dog keeps one row of 14 pixels in frame_000000 (a train image) and nothing else
        path = tmp_path / "cvat" / "SegmentationClass" / f"frame_{i:06d}.png"
        rgb = np.array(Image.open(path))
        dog = (rgb == ex.CVAT_CLASSES[2][1]).all(axis=2)
        if i == 0:
            dog[np.flatnonzero(dog.any(axis=1))[0]] = False
        rgb[dog] = (0, 0, 0)
        Image.fromarray(rgb).save(path)
    assert _run("prepare", "custom", "few", "--from", str(tmp_path / "cvat"), "--root", str(tmp_path),
                "--val-fraction", "0.25", "-j", "1").exit_code == 0  # fmt: skip
    defaults = own_data_defaults(UnifiedDataset(tmp_path / "few"), batch=None)
    assert defaults["model"]["name"] == "lw-refinenet-50" and defaults["model"]["pretrained_backbone"] is True
    assert defaults["optim"]["restart_at_milestones"] and defaults["data"]["crop"] == 32  # LW recipe, sized crop
    assert defaults["data"]["batch"] == 3 and defaults["train"] == {**defaults["train"], "epochs": 300, "val_every": 30}
    assert "300 epochs of 1 step(s) (300 steps)" in defaults["description"]  # the 300-epoch cap, not ~4000 steps
    assert defaults["data"]["max_short_side"] is None  # small pictures keep their own size
    result = _run("train", "--data", str(tmp_path / "few"), "--out", str(tmp_path / "run"), *FAST, "--iters", "1")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "train: class 2 'dog' is rare: 0.15 % of the labelled pixels" in text, text


def test_balanced_weights_and_the_weighted_loss() -> None:
    assert balanced_class_weights([800, 100, 100, 0]) == [0.125, 1.0, 1.0, 1.0]
    assert balanced_class_weights([10_000, 1, 50]) == [0.1, 10.0, 1.0]
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 3, 1)
    weights = [0.2, 1.0, 3.0]
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), None, DistContext(), class_weights=weights)
    images = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[0, 0] = 255
    expected = F.cross_entropy(model(step.to_input(images)), labels, weight=torch.tensor(weights), ignore_index=255)
    assert step.loss(images, labels).item() == pytest.approx(expected.item(), rel=1e-5)
