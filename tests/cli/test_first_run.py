"""A user's first real run: own small images -> `refine train` with nothing but `--iters` learns.

Also the non-finite-loss stop as the user sees it, and `--threads` on train, eval and predict.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.models.checkpoint import load_checkpoint
from tests.support import custom_exports as ex

SIZE = (64, 80)  # (height, width): small photos, not square
COLOURS = np.array([(110, 110, 100), (200, 50, 40), (40, 60, 210)])


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def own_data(tmp_path_factory) -> Path:
    """20 photos of 64x80 with 3 classes, the colour of each region class-typical under heavy noise."""
    root = tmp_path_factory.mktemp("first-run")
    for index in range(20):
        label = ex.painted(index, size=SIZE)
        noise = np.random.default_rng(index).normal(0, 30, (*SIZE, 3))
        ex.save_rgb(root / "src" / "images" / f"p{index:02d}.jpg",
                    np.clip(COLOURS[label] + noise, 0, 255).astype(np.uint8), quality=92)  # fmt: skip
        ex.save_index(root / "src" / "masks" / f"p{index:02d}.png", label)
    (root / "src" / "classes.txt").write_text("background\ncat\ndog\n")
    classes = str(root / "src" / "classes.txt")
    prepared = _run("prepare", "custom", "mine", "--from", str(root / "src"), "--classes", classes,
                    "--root", str(root), "-j", "1", "--val-fraction", "0.2")  # fmt: skip
    assert prepared.exit_code == 0, prepared.output
    return root / "mine"


@pytest.fixture
def offline(monkeypatch) -> None:
    """No ImageNet weights can be had (tests never download): the plan trains from scratch."""
    monkeypatch.setattr("refine_cli.engine.train.own_data.imagenet_weights_available", lambda model: False)


def test_train_with_nothing_but_iters_learns(own_data: Path, tmp_path: Path, offline, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the shared test machine; the rule itself is tested apart
    run = tmp_path / "run"
    trained = _run("train", "--data", str(own_data), "--out", str(run), "--iters", "60")
    assert trained.exit_code == 0, trained.output
    text = _flat(trained.output)
    assert "plan: lw-refinenet-mobilenetv2 (no ImageNet weights to be had (offline?)" in text
    assert "crop 64, min side 64, batch 16 | 60 steps = 60 epochs of 1 | from scratch" in text
    assert "estimate: the whole run takes about" in text  # after the first 20 steps
    config = load_checkpoint(run / "best.pt").train_config
    meta = json.loads((own_data / "meta.json").read_text())["image_sizes"]
    assert config["data"]["crop"] <= meta["short_side"]["median"] and config["data"]["crop"] % 32 == 0
    assert config["data"]["min_short_side"] <= meta["short_side"]["median"]
    assert config["model"]["freeze_bn"] is False and config["optim"]["grad_clip"] and config["optim"]["warmup_iters"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = max(row["miou"] for row in rows if row["kind"] == "val")
    # always predicting background scores ~0.29 here (its IoU ~0.86, the two squares 0)
    assert best > 0.6, rows


def test_a_diverging_run_names_its_own_remedies(own_data: Path, tmp_path: Path, offline) -> None:
    torch.set_num_threads(2)
    try:
        result = _run("train", "--data", str(own_data), "--out", str(tmp_path / "run"), "--iters", "6",
                      "--lr", "1e12", "--workers", "0", "--threads", "1")  # fmt: skip
        threads_during_run = torch.get_num_threads()
    finally:
        torch.set_num_threads(1)
    assert result.exit_code == 2, result.output
    text = _flat(result.output)
    assert "training loss became nan" in text or "training loss became inf" in text
    assert "lower the learning rate (--lr 1e+11)" in text and "amp" not in text.lower()
    assert "1 CPU thread(s) (--threads" in text and threads_during_run == 1


def test_eval_and_predict_take_threads(own_data: Path, tmp_path: Path, offline) -> None:
    run = tmp_path / "run"
    trained = _run("train", "--data", str(own_data), "--out", str(run), "--iters", "1", "--workers", "0",
                   "--threads", "1")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    try:
        for threads in ("2", "1"):
            torch.set_num_threads(3 - int(threads))
            evaluated = _run("eval", "--checkpoint", str(run / "best.pt"), "--data", str(own_data), "--threads",
                             threads)  # fmt: skip
            assert evaluated.exit_code == 0 and torch.get_num_threads() == int(threads), evaluated.output
            torch.set_num_threads(3 - int(threads))
            image = next((own_data / "images").iterdir())
            predicted = _run("predict", str(image), "--checkpoint", str(run / "best.pt"), "--out",
                             str(tmp_path / f"pred{threads}"), "--threads", threads)  # fmt: skip
            assert predicted.exit_code == 0 and torch.get_num_threads() == int(threads), predicted.output
    finally:
        torch.set_num_threads(1)
    refused = _run("eval", "--checkpoint", str(run / "best.pt"), "--data", str(own_data), "--threads", "0")
    assert refused.exit_code == 2 and "--threads" in refused.output


def test_large_losses_show_in_scientific_notation() -> None:
    from refine_cli.cli.train import format_loss

    assert format_loss(0.4213) == "0.4213" and format_loss(1234.5) == "1234.5000"
    assert format_loss(101407283979246928.0) == "1.014e+17" and format_loss(3e-6) == "3.000e-06"
    assert format_loss(float("nan")) == "nan" and format_loss(0.0) == "0.0000"


def test_absurd_thread_counts_are_refused_before_torch_sees_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench --threads 100000` crashed torch (a segfault, or a MemoryError traceback); OMP_NUM_THREADS likewise."""
    from refine_cli import threads
    from refine_cli.errors import RefineError

    monkeypatch.setattr(threads, "usable_cpus", lambda *args: 2)
    result = _run("bench", "-m", "lw-refinenet-mobilenetv2", "--size", "32", "--iters", "2", "--device", "cpu",
                  "--threads", "100000")  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (
        "--threads 100000 is far more threads than the 2 CPU core(s)" in result.output and "at most 8" in result.output
    )
    monkeypatch.setenv("OMP_NUM_THREADS", "100000")
    with pytest.raises(RefineError, match="OMP_NUM_THREADS 100000 is far more threads"):
        threads.choose_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert threads.choose_threads() == (8, "OMP_NUM_THREADS")
