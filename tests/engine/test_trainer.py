"""The training loop: exact resume (also after kill -9 in a checkpoint write), NaN stop, data errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.engine.train import run_files
from refine_cli.engine.train.config import TrainConfig, resolve_config
from refine_cli.engine.train.step import TrainStep
from refine_cli.engine.train.trainer import TrainCallbacks, Trainer, train
from refine_cli.errors import RefineError
from refine_cli.models.checkpoint import load_checkpoint
from tests.support.tiny_seg import make_tiny_dataset

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # a shared 2-core machine


@pytest.fixture
def tiny(tiny_dataset: Path) -> Path:
    """The session's tiny dataset (3 classes, 8 train / 2 val of 40x48): read only."""
    return tiny_dataset


def tiny_config(root: Path, **overrides) -> TrainConfig:
    base = {
        "data.root": str(root),
        "data.crop": 32,
        "data.batch": 4,
        "data.workers": 0,
        "data.min_short_side": None,
        "model.name": "lw-refinenet-mobilenetv2",
        "optim.encoder_lr": 1e-2,
        "optim.schedule": "poly",
        "train.epochs": 2,
        "train.val_every": 1,
        "train.device": "cpu",
        "train.log_every": 1,
    }
    return resolve_config(overrides={**base, **overrides})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class _Stop(Exception):
    pass


class _StopAfter(TrainCallbacks):
    """Simulates an interruption right after the checkpoint of `step` was written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_checkpoint(self, step: int, path: Path) -> None:
        if step == self.step and path.name == run_files.LAST:
            raise _Stop


def test_run_folder_and_exact_resume(tiny: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny)
    straight = train(cfg, tmp_path / "straight")
    assert straight.steps == 4 and straight.epochs == 2 and straight.best_miou is not None
    run = tmp_path / "straight"
    assert {"config.yaml", "last.pt", "best.pt", "metrics.jsonl", "metrics.csv"} <= {p.name for p in run.iterdir()}
    assert TrainConfig.from_dict(__import__("yaml").safe_load((run / "config.yaml").read_text())) == cfg
    last = load_checkpoint(run / "last.pt")
    assert last.train_config == cfg.to_dict() and last.extra["resume"]["step"] == 4
    dataset_meta = UnifiedDataset(tiny).meta  # the dataset's facts (e.g. Cityscapes id maps) travel along
    assert last.extra["dataset"] == {"name": dataset_meta.name, "extra": dataset_meta.extra}
    rows = [__import__("json").loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "val"] == [2, 4]
    assert (run / "metrics.csv").read_text().splitlines()[0].startswith("kind,step,epoch,loss,lr")

    with pytest.raises(_Stop):
        train(cfg, tmp_path / "resumed", callbacks=_StopAfter(2))
    assert load_checkpoint(tmp_path / "resumed" / "last.pt").extra["resume"]["step"] == 2
    resumed = train(cfg, tmp_path / "resumed", resume_from=tmp_path / "resumed")
    assert resumed.steps == 4
    _assert_same(_weights(run / "last.pt"), _weights(tmp_path / "resumed" / "last.pt"))
    resumed_rows = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [__import__("json").loads(r)["step"] for r in resumed_rows] == [r["step"] for r in rows]


def test_resumed_run_reports_the_speed_of_its_own_steps(tiny: Path, tmp_path: Path, monkeypatch) -> None:
    """train_seconds adds up every session; img/s is this session's images over this session's time only."""
    import refine_cli.engine.train.trainer as trainer_module

    cfg, run = tiny_config(tiny), tmp_path / "run"
    with pytest.raises(_Stop):
        train(cfg, run, callbacks=_StopAfter(2))

    restore = trainer_module.apply_resume_record

    def long_earlier_session(*args, **kwargs):  # the first session "took" 10^6 s
        resumed = restore(*args, **kwargs)
        resumed.elapsed += 1e6
        return resumed

    monkeypatch.setattr(trainer_module, "apply_resume_record", long_earlier_session)
    summary = train(cfg, run, resume_from=run)
    assert summary.steps == 4 and summary.train_seconds > 1e6
    assert summary.images_per_second > 0.01  # 2 steps x 4 images in seconds, not in 10^6 s (0.0 img/s)


def test_resume_after_kill_9_during_checkpoint_write(tiny: Path, tmp_path: Path) -> None:
    """A real SIGKILL while last.pt of step 4 is half written: the step-2 file survives and resume is exact."""
    # batch 2: 4 steps per epoch, so the step-2 checkpoint is mid-epoch and resuming skips 2 batches
    cfg = tiny_config(tiny, **{"train.iters": 4, "train.val_every": 2, "data.val_split": None, "data.batch": 2})
    reference = train(cfg, tmp_path / "reference")
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        torch.set_num_threads(1)
        import refine_cli.models.checkpoint as ck
        from refine_cli.engine.train.config import TrainConfig
        from refine_cli.engine.train.trainer import train
        real_save, calls = torch.save, []
        def dying_save(obj, path, *a, **k):
            calls.append(path)
            if len(calls) == 2:  # the second last.pt write (step 4)
                with open(path, "wb") as handle:
                    handle.write(b"PK\\x03\\x04 half a zip")
                    handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, path, *a, **k)
        ck.torch.save = dying_save
        train(TrainConfig.from_dict({cfg.to_dict()!r}), {str(tmp_path / "killed")!r})
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    killed = tmp_path / "killed"
    assert any(p.name.endswith(".part") for p in killed.iterdir())  # the half-written temporary
    assert load_checkpoint(killed / "last.pt").extra["resume"]["step"] == 2  # the complete earlier file
    summary = train(cfg, killed, resume_from=killed)
    assert summary.steps == reference.steps == 4
    _assert_same(_weights(tmp_path / "reference" / "last.pt"), _weights(killed / "last.pt"))


def test_save_schedule_steps_and_clock() -> None:
    now = [0.0]
    schedule = run_files.SaveSchedule(every_steps=3, every_minutes=1.0, clock_check_steps=2, clock=lambda: now[0])
    assert [step for step in range(1, 10) if schedule.due(step)] == [3, 6, 9]  # the clock has not moved
    now[0] = 61.0
    assert not schedule.due(5)  # the clock is only consulted every clock_check_steps steps
    assert schedule.due(4) and not schedule.due(4, agree=lambda decision: False)  # rank 0's answer wins
    schedule.saved()
    assert not schedule.due(8)
    assert not any(run_files.SaveSchedule(0, 0.0, clock=lambda: now[0]).due(step) for step in range(1, 50))


def test_last_pt_on_its_own_cadence_and_exact_resume_after_kill_9(tiny: Path, tmp_path: Path) -> None:
    """Save every 2 steps, validate only at the end: kill -9 after step 4's save, resume, same bits as straight."""
    overrides = {"train.iters": 6, "train.val_every": 6, "train.val_unit": "steps", "data.batch": 2}
    cfg = tiny_config(tiny, **overrides, **{"data.val_split": None, "train.save_every_steps": 2})
    reference = train(cfg, tmp_path / "reference")
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        torch.set_num_threads(1)
        from refine_cli.engine.train.config import TrainConfig
        from refine_cli.engine.train.trainer import TrainCallbacks, train
        class KillAfter4(TrainCallbacks):
            def on_checkpoint(self, step, path):
                if step == 4:
                    os.kill(os.getpid(), signal.SIGKILL)
        train(TrainConfig.from_dict({cfg.to_dict()!r}), {str(tmp_path / "killed")!r}, callbacks=KillAfter4())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    killed = tmp_path / "killed"
    assert load_checkpoint(killed / "last.pt").extra["resume"]["step"] == 4  # not a validation point
    summary = train(cfg, killed, resume_from=killed)
    assert summary.steps == reference.steps == 6
    _assert_same(_weights(tmp_path / "reference" / "last.pt"), _weights(killed / "last.pt"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny: Path, tmp_path: Path, monkeypatch) -> None:
    real_loss = TrainStep.loss
    calls = []

    def loss(self, images, labels):
        calls.append(1)
        value = real_loss(self, images, labels)
        return value * float("nan") if len(calls) == 3 else value

    monkeypatch.setattr(TrainStep, "loss", loss)
    cfg = tiny_config(tiny, **{"train.iters": 4, "train.val_every": 2, "data.val_split": None})
    with pytest.raises(RefineError, match=r"loss became nan at step 3 .* last good checkpoint .*last\.pt is kept"):
        train(cfg, tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "last.pt").extra["resume"]["step"] == 2


def test_out_of_range_label_names_sample_and_value(tmp_path: Path) -> None:
    root = make_tiny_dataset(tmp_path, train=4, val=1, bad_label=("train_002", 7), size=(32, 32))
    cfg = tiny_config(root, **{"data.val_split": None})
    with pytest.raises(RefineError, match=r"sample 'train_002' of split 'train': label value 7 is out of range"):
        train(cfg, tmp_path / "run")


def test_setup_errors_are_one_clear_refine_error(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(RefineError, match="not a unified dataset"):
        train(tiny_config(tmp_path), tmp_path / "a")
    with pytest.raises(RefineError, match="has no split 'nope'"):
        train(tiny_config(tiny, **{"data.train_split": "nope"}), tmp_path / "b")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RefineError, match="is not writable"):
        train(tiny_config(tiny), blocker / "run")


def test_init_checkpoint_must_match_the_class_count(tiny: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny, **{"train.iters": 1, "data.val_split": None})
    train(cfg, tmp_path / "stage1")
    other = make_tiny_dataset(tmp_path / "d5", num_classes=5, train=4, val=1, size=(32, 32), name="five")
    stage2 = tiny_config(other, **{"train.iters": 1, "model.init": str(tmp_path / "stage1" / "last.pt")})
    with pytest.raises(RefineError, match="has 3 classes but dataset five has 5"):
        train(stage2, tmp_path / "stage2")
    ok = tiny_config(
        tiny, **{"train.iters": 1, "data.val_split": None, "model.init": str(tmp_path / "stage1" / "last.pt")}
    )
    assert train(ok, tmp_path / "stage2").steps == 1
    with pytest.raises(RefineError, match="already holds a training run"):
        train(ok, tmp_path / "stage2")


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    import random

    import numpy as np

    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    torch.save({"rng": run_files.capture_rng()}, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    run_files.restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def test_bf16_autocast_on_cpu_trains(tiny: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny, **{"train.iters": 2, "train.amp": "bf16", "data.val_split": None})
    summary = train(cfg, tmp_path / "run")
    assert summary.steps == 2
    assert all(torch.isfinite(v).all() for v in _weights(tmp_path / "run" / "last.pt").values())


def test_exact_resume_restores_dropout_rng(tiny: Path, tmp_path: Path, monkeypatch) -> None:
    """LW-RefineNet-50 applies dropout in training: only restored RNG states make the resume exact."""
    overrides = {"model.name": "lw-refinenet-50", "optim.encoder_lr": 1e-4, "optim.grad_clip": 1.0}
    cfg = tiny_config(tiny, **overrides, **{"train.iters": 2, "train.val_every": 1, "data.batch": 2})
    cfg.data.val_split = None
    train(cfg, tmp_path / "straight")
    for name in ("resumed", "no-rng"):  # stopped after step 1: step 2's dropout masks come from restored RNGs
        with pytest.raises(_Stop):
            train(cfg, tmp_path / name, callbacks=_StopAfter(1))
    train(cfg, tmp_path / "resumed", resume_from=tmp_path / "resumed")
    _assert_same(_weights(tmp_path / "straight" / "last.pt"), _weights(tmp_path / "resumed" / "last.pt"))
    monkeypatch.setattr(run_files, "restore_rng", lambda state: None)
    train(cfg, tmp_path / "no-rng", resume_from=tmp_path / "no-rng")
    straight, broken = _weights(tmp_path / "straight" / "last.pt"), _weights(tmp_path / "no-rng" / "last.pt")
    assert any(not torch.equal(straight[k], broken[k]) for k in straight)  # the test can tell the difference


def test_resume_with_a_new_learning_rate_uses_it(tiny: Path, tmp_path: Path) -> None:
    """`--resume --lr X` trains with X: the saved optimiser state must not bring the old rate back."""
    common = {"optim.schedule": "constant", "data.val_split": None, "train.epochs": None, "train.val_every": 2}
    train(tiny_config(tiny, **common, **{"train.iters": 2}), tmp_path / "run")
    changed = tiny_config(tiny, **common, **{"train.iters": 4, "optim.encoder_lr": 0.5, "optim.momentum": 0.5})
    train(changed, tmp_path / "run", resume_from=tmp_path / "run")
    rows = [__import__("json").loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = {row["step"]: row["lr"] for row in rows if row["kind"] == "train"}
    assert lrs[1] == pytest.approx(1e-2) and lrs[3] == pytest.approx(0.5) and lrs[4] == pytest.approx(0.5)
    saved = load_checkpoint(tmp_path / "run" / "last.pt").extra["resume"]["optimizer"]
    groups = saved["param_groups"]
    assert [g["initial_lr"] for g in groups] == pytest.approx([0.5, 0.5 * changed.optim.decoder_lr_mult])
    assert {g["momentum"] for g in groups} == {0.5}


def test_unreadable_label_in_a_loader_worker_is_one_clear_error(tmp_path: Path) -> None:
    """Raised inside a worker process the error would come back wrapped in a traceback; it must not."""
    root = make_tiny_dataset(tmp_path, train=4, val=1, size=(32, 32))
    label = next((root / "labels").glob("train_*.png"))
    label.write_text("not a png")
    cfg = tiny_config(root, **{"data.val_split": None, "data.workers": 1})
    with pytest.raises(RefineError) as info:
        train(cfg, tmp_path / "run")
    assert label.stem in info.value.message and "Traceback" not in info.value.message


def test_val_unit_epochs_in_an_iteration_run(tiny: Path, tmp_path: Path) -> None:
    """8 images, batch 4: 2 steps per epoch, so 'every 1 epoch' over 4 steps validates at steps 2 and 4."""
    cfg = tiny_config(
        tiny, **{"train.epochs": None, "train.iters": 4, "train.val_every": 1, "train.val_unit": "epochs"}
    )
    train(cfg, tmp_path / "run")
    rows = [__import__("json").loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if row["kind"] == "val"] == [2, 4]


def test_lw_stages_restart_momentum_at_milestones(tiny: Path, tmp_path: Path) -> None:
    """LW's stages each built a fresh optimiser: the momentum buffers are dropped at every milestone."""
    overrides = {
        "train.epochs": None, "train.iters": 4, "data.val_split": None, "train.val_every": 4,
        "optim.schedule": "multistep", "optim.milestones": [0.5], "optim.lr_factors": [1.0, 0.5],
        "optim.restart_at_milestones": True,
    }  # fmt: skip
    seen: dict[int, int] = {}

    class Watch(TrainCallbacks):
        def on_step(self, step: int, stats: dict) -> None:
            seen[step] = sum("momentum_buffer" in state for state in trainer.optimizer.state.values())

    trainer = Trainer(tiny_config(tiny, **overrides), tmp_path / "run", None, Watch())
    trainer.run()
    assert seen[1] > 0 and seen[2] == 0 and seen[3] == seen[1]  # dropped at the milestone (step 2), rebuilt after
    seen.clear()
    overrides["optim.restart_at_milestones"] = False
    trainer = Trainer(tiny_config(tiny, **overrides), tmp_path / "kept", None, Watch())
    trainer.run()
    assert seen[2] == seen[1] > 0
