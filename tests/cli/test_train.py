"""`refine train` end to end through the CLI: recipe + flags, JSON summary, resume, --init, --amp, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from refine_cli.models import create_model
from refine_cli.models.checkpoint import load_checkpoint, save_checkpoint
from tests.support.cli import error_line, run_cli

MODEL = "lw-refinenet-mobilenetv2"

FAST = ["--model", MODEL, "--crop", "32", "--batch", "4", "--workers", "0", "--device", "cpu"]
FAST += ["--set", "data.min_short_side=null"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # a shared 2-core machine


def _run(*args: str | Path):  # noqa: ANN202 - click Result
    return run_cli(*args)


def _error_line(result) -> str:  # noqa: ANN001 - click Result
    return error_line(result, alone=True)


def test_train_recipe_flags_json_and_resume(tiny_dataset: Path, tmp_path: Path) -> None:
    data = tiny_dataset
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


def test_train_errors_are_one_line(tiny_dataset: Path, tmp_path: Path) -> None:
    data = tiny_dataset
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
    assert not (tmp_path / "r").exists()  # every refusal came before the run folder


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


def test_set_values_obey_the_flag_rules(tiny_dataset: Path, tmp_path: Path) -> None:
    """`--set` cannot slip past a flag's limit: the one option table (config.train_options) checks both."""
    data = tiny_dataset
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


ONE_STEP = [*FAST, "--val-split", "none", "--iters", "1"]


def test_train_init_starts_from_the_given_weights(tiny_dataset: Path, tmp_path: Path) -> None:
    """With a vanishing learning rate the one-step run must still hold the --init weights, not fresh ones."""
    torch.manual_seed(0)  # the seed `refine train` uses: a fresh model would equal create_model's ...
    init_model = create_model(MODEL, num_classes=3)
    with torch.no_grad():  # ... so move every weight away from it
        for parameter in init_model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    init = tmp_path / "init.pt"
    save_checkpoint(init, model_name=MODEL, model=init_model, num_classes=3)
    frozen_bn = ["--set", "model.freeze_bn=true"]  # BN statistics frozen: only the optimiser moves weights
    result = _run("train", "--data", tiny_dataset, "--out", tmp_path / "run", *ONE_STEP, *frozen_bn, "--init", init,
                  "--lr", "1e-12")  # fmt: skip
    assert result.exit_code == 0, result.output
    trained = load_checkpoint(tmp_path / "run" / "last.pt").state_dict
    expected = init_model.state_dict()
    assert trained.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(trained[key], value, atol=1e-6, rtol=0, msg=key)


@pytest.mark.parametrize(("amp", "dtype"), [("bf16", torch.bfloat16), ("off", torch.float32)])
def test_train_amp_runs_the_training_forward_in_that_dtype(
    tiny_dataset: Path, tmp_path: Path, amp: str, dtype: torch.dtype
) -> None:
    seen: list[torch.dtype] = []

    def record(module: nn.Module, args: object, output: object) -> None:
        if isinstance(module, nn.Conv2d) and module.training and isinstance(output, torch.Tensor):
            seen.append(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        result = _run("train", "--data", tiny_dataset, "--out", tmp_path / "run", *ONE_STEP, "--amp", amp)
    finally:
        handle.remove()
    assert result.exit_code == 0, result.output
    assert len(seen) > 10 and set(seen) == {dtype}
