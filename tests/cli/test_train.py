"""`refine train` end to end through the CLI: recipe + flags, JSON summary, resume, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.models.checkpoint import load_checkpoint
from tests.support.tiny_seg import make_tiny_dataset

FAST = ["--model", "lw-refinenet-mobilenetv2", "--crop", "32", "--batch", "4", "--workers", "0", "--device", "cpu"]
FAST += ["--set", "data.min_short_side=null"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # a shared 2-core machine


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(lines) == 1, result.output
    return lines[0]


def test_train_recipe_flags_json_and_resume(tmp_path: Path) -> None:
    data = make_tiny_dataset(tmp_path, train=8, val=2, size=(40, 48))
    run = tmp_path / "run"
    result = _run(
        "train", "--recipe", "demo-shapes", "--data", str(data), "--out", str(run), *FAST,
        "--iters", "2", "--val-every", "2", "--lr", "0.02", "--json", str(tmp_path / "s.json"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["steps"] == 2 and summary["best_step"] == 2 and 0 <= summary["best_miou"] <= 1
    assert "best val mIoU" in result.output
    config = load_checkpoint(run / "best.pt").train_config
    assert config["recipe"] == "demo-shapes" and config["optim"]["encoder_lr"] == 0.02
    assert config["data"]["crop"] == 32 and config["train"]["iters"] == 2 and config["train"]["epochs"] is None

    again = _run("train", "--resume", str(run), "--iters", "4", "--json", "-")
    assert again.exit_code == 0, again.output
    assert "resuming with changed settings: train.iters" in again.output
    assert load_checkpoint(run / "last.pt").extra["resume"]["step"] == 4
    finished = _run("train", "--resume", str(run))  # nothing left: the table says so instead of "0.0 img/s"
    assert finished.exit_code == 0 and "no step left to run" in finished.output, finished.output


def test_train_errors_are_one_line(tmp_path: Path) -> None:
    data = make_tiny_dataset(tmp_path, train=4, val=1, size=(32, 32))
    line = _error_line(_run("train", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r"), *FAST))
    assert line.startswith("error: dataset folder") and "does not exist" in line
    line = _error_line(_run("train", "--data", str(data), "--val-split", "test", "--out", str(tmp_path / "r"), *FAST))
    assert "no split 'test'" in line and "available splits: train, val" in line
    line = _error_line(_run("train", "--data", str(data), *FAST))
    assert "no run folder given" in line
    line = _error_line(_run("train", "--resume", str(tmp_path / "missing")))
    assert "run to resume not found" in line
    line = _error_line(_run("train", "--recipe", "nope", "--data", str(data), "--out", str(tmp_path / "r")))
    assert "unknown recipe 'nope'" in line and "lw-voc" in line
    line = _error_line(_run("train", "--data", str(data), "--out", str(tmp_path / "r"), "--amp", "fp16", *FAST))
    assert "fp16 needs a CUDA device" in line


def test_switching_the_run_length_unit_keeps_the_validation_cadence() -> None:
    """--iters over an epoch recipe: 'every 5 epochs' must not silently become 'every 5 steps'."""
    from refine_cli.cli._train_config import keep_validation_cadence
    from refine_cli.engine.train.config import resolve_config

    epochs_recipe = resolve_config(overrides={"train.epochs": 100, "train.iters": None, "train.val_every": 5})
    overrides = {"train.iters": 30000, "train.epochs": None}
    note = keep_validation_cadence(epochs_recipe, overrides)
    assert overrides["train.val_unit"] == "epochs" and "every 5 epochs" in note
    assert resolve_config(base=epochs_recipe.to_dict(), overrides=overrides).train.val_unit == "epochs"
    steps_recipe = resolve_config(overrides={"train.epochs": None, "train.iters": 450, "train.val_every": 150})
    overrides = {"train.epochs": 10, "train.iters": None}
    assert keep_validation_cadence(steps_recipe, overrides) and overrides["train.val_unit"] == "steps"
    explicit = {"train.iters": 30000, "train.epochs": None, "train.val_every": 7}
    assert keep_validation_cadence(epochs_recipe, explicit) is None and "train.val_unit" not in explicit
    same_unit = {"train.epochs": 20, "train.iters": None}
    assert keep_validation_cadence(epochs_recipe, same_unit) is None and "train.val_unit" not in same_unit


def test_set_values_obey_the_flag_rules(tmp_path: Path) -> None:
    """`--set` cannot slip past a flag's limit: the one option table (config.train_options) checks both."""
    data = make_tiny_dataset(tmp_path, train=4, val=1, size=(32, 32))
    base = ["train", "--data", str(data), "--out", str(tmp_path / "r")]
    line = _error_line(_run(*base, *FAST, "--set", "data.crop=4"))
    assert "data.crop must be at least 8, got 4" in line
    line = _error_line(_run(*base, *FAST, "--crop", "4"))
    assert "--crop" in line and "8" in line
    line = _error_line(_run(*base, *FAST, "--set", "optim.encoder_lr=nan"))
    assert "optim.encoder_lr must be a finite number" in line
    line = _error_line(_run(*base, *FAST, "--set", "train.save_every_steps=-1"))
    assert "train.save_every_steps must be at least 0" in line
    assert not (tmp_path / "r").exists()
