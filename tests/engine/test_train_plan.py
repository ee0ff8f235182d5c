"""The own-data plan (crop, batch, model, from-scratch recipe), the plan line, the time estimate, the
non-finite-loss remedies and the thread rule: pure functions, no training."""

from __future__ import annotations

import os

import pytest

from refine_cli.data.format.image_sizes import ImageSizes
from refine_cli.engine.train import own_data
from refine_cli.engine.train.config import resolve_config
from refine_cli.engine.train.plan import (
    ESTIMATE_AFTER,
    RunEstimate,
    StepTimer,
    estimate_line,
    format_duration,
    non_finite_remedies,
    plan_line,
    shorten_advice,
)
from refine_cli.threads import choose_threads, default_threads


def sizes(short: int) -> ImageSizes:
    return ImageSizes(10, (short, short, short), (short * 4 // 3,) * 3, (short, short, short))


@pytest.mark.parametrize(("short", "crop"), [(96, 96), (100, 96), (480, 480), (1080, 512), (40, 32), (20, 32)])
def test_crop_is_at_most_the_median_short_side_in_multiples_of_32(short: int, crop: int) -> None:
    assert own_data.plan_crop(sizes(short)) == crop


def test_batch_follows_the_crop_and_the_images() -> None:
    assert own_data.plan_batch(512, 1000) == 6  # about the LW recipe's 6 crops of 500
    assert own_data.plan_batch(96, 1000) == 16  # small crops: more of them, capped
    assert own_data.plan_batch(96, 5) == 5  # never more than the training images


def test_model_choice_by_weights_and_device() -> None:
    everything = own_data.choose_model("cpu", None, lambda name: True)
    assert everything.name == own_data.MOBILE_MODEL and everything.imagenet and "CPU" in everything.reason
    big = own_data.choose_model("cuda", 80.0, lambda name: True)
    assert big.name == own_data.RESNET_MODEL and "80 GiB" in big.reason
    small_gpu = own_data.choose_model("cuda", 4.0, lambda name: True)
    assert small_gpu.name == own_data.MOBILE_MODEL
    only_resnet = own_data.choose_model("cpu", None, lambda name: name == own_data.RESNET_MODEL)
    assert only_resnet.name == own_data.RESNET_MODEL and "no ImageNet weights here" in only_resnet.reason
    offline = own_data.choose_model("cuda", 80.0, lambda name: False)
    assert offline.name == own_data.MOBILE_MODEL and not offline.imagenet and "from scratch" in offline.reason


def _config(**overrides):  # noqa: ANN202
    base = {"data.root": "x", "train.iters": 300, "train.epochs": None}
    return resolve_config(overrides={**base, **overrides})


INFO = {"total_steps": 300, "steps_per_epoch": 1, "world_size": 1, "device": "cpu", "threads": 1,
        "threads_why": "2 CPU(s) - 2 worker(s)"}  # fmt: skip


def test_plan_line_names_model_sizes_length_and_start(monkeypatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # `refine` may have set it on a busy machine
    cfg = _config(**{"model.name": "lw-refinenet-mobilenetv2", "data.crop": 96, "data.min_short_side": 96,
                     "data.batch": 16, "model.pretrained_backbone": False, "model.freeze_bn": False,
                     "optim.grad_clip": 5.0, "optim.warmup_iters": 15})  # fmt: skip
    line = plan_line(cfg, INFO, "no ImageNet weights to be had (offline?): the small model, from scratch")
    assert line.startswith("plan: lw-refinenet-mobilenetv2 (no ImageNet weights")
    assert "crop 96, min side 96, batch 16 | 300 steps = 300 epochs of 1" in line
    assert "from scratch (no ImageNet init; BN trained, grad clip 5)" in line and "after 15 warm-up steps" in line
    assert line.endswith("cpu, 1 CPU thread(s) (2 CPU(s) - 2 worker(s))")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert plan_line(cfg, INFO).endswith("(2 CPU(s) - 2 worker(s), OpenMP waits passive)")
    imagenet = plan_line(_config(**{"model.pretrained_backbone": True}), INFO)
    assert "| ImageNet backbone, BN frozen |" in imagenet and "lr 0.0005 (decoder x10)" in imagenet


def test_the_estimate_comes_once_after_the_first_steps_without_validation_time() -> None:
    timer = StepTimer(total_steps=1000, start_step=0, device="cpu")
    estimates = []
    for step in range(1, 40):
        if step == 10:
            timer.exclude(50.0)  # a validation between steps 9 and 10: not a step's cost
        estimate = timer.step(step, now=step * 2.0 + (50.0 if step >= 10 else 0.0))
        if estimate is not None:
            estimates.append((step, estimate))
    assert [step for step, _ in estimates] == [ESTIMATE_AFTER]
    estimate = estimates[0][1]
    assert estimate.seconds_per_step == pytest.approx(2.0) and estimate.total_s == pytest.approx(2000.0)
    line = estimate_line(estimate)
    assert line.startswith("estimate: the whole run takes about 33 min (2 s/step x 1,000 steps; 33 min left")


def test_a_long_cpu_run_is_told_how_to_shorten_it() -> None:
    long_cpu = RunEstimate(seconds_per_step=9.0, total_steps=4000, steps_done=20, device="cpu")
    advice = shorten_advice(long_cpu, "lw-refinenet-50")
    assert advice is not None and "--model lw-refinenet-mobilenetv2" in advice
    assert "--iters 793 " in advice and "GPU" in advice  # 793 steps x 9 s fit in 2 h less a minute
    assert "--model" not in (shorten_advice(long_cpu, "lw-refinenet-mobilenetv2") or "")
    assert shorten_advice(RunEstimate(9.0, 4000, 20, "cuda:0"), "lw-refinenet-50") is None
    assert shorten_advice(RunEstimate(1.0, 4000, 20, "cpu"), "lw-refinenet-50") is None  # 67 min: fine
    assert format_duration(10 * 3600 + 5 * 60) == "10 h 05 min" and format_duration(45) == "45 s"


def test_non_finite_remedies_fit_the_run() -> None:
    scratch = _config(**{"model.pretrained_backbone": False, "optim.grad_clip": None, "model.freeze_bn": True})
    hint = non_finite_remedies(scratch, None)
    assert "--lr 5e-05" in hint and "--grad-clip 5" in hint and "warmup_iters" in hint
    assert "model.freeze_bn=false" in hint and "--decoder-lr-mult 1" in hint
    assert "amp" not in hint.lower() and "resume" not in hint  # AMP is off; nothing to resume
    clipped = _config(**{"optim.grad_clip": 5.0, "optim.warmup_iters": 10, "model.pretrained_backbone": True,
                         "train.amp": "bf16"})  # fmt: skip
    hint = non_finite_remedies(clipped, "runs/x")
    assert "--grad-clip" not in hint and "warmup" not in hint and "--amp off" in hint
    assert hint.endswith("then continue with --resume runs/x and the change")
    assert "--amp bf16" in non_finite_remedies(_config(**{"train.amp": "fp16"}), None)


def test_the_thread_rule_counts_processes_and_workers(monkeypatch) -> None:
    assert default_threads(workers=0, processes=1, cpus=2) == 2
    assert default_threads(workers=2, processes=1, cpus=2) == 1  # never below one
    assert default_threads(workers=2, processes=1, cpus=16) == 14
    assert default_threads(workers=2, processes=4, cpus=16) == 2  # torchrun: 4 processes share 16 CPUs
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("refine_cli.threads.usable_cpus", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert choose_threads(None, workers=1) == (3, "8 CPU(s) / 2 processes - 1 worker(s)")
    assert choose_threads(5, workers=1) == (5, "--threads")
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    assert choose_threads(None, workers=1) == (6, "OMP_NUM_THREADS")


def test_openmp_waits_passively_only_on_a_busy_machine(monkeypatch) -> None:
    import sys

    from refine_cli.threads import wait_quietly_when_busy

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr("refine_cli.threads.usable_cpus", lambda: 2)
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # as at the start of `refine`, before torch is loaded
    monkeypatch.setattr("os.getloadavg", lambda: (0.4, 0.5, 0.5))
    assert not wait_quietly_when_busy() and "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setattr("os.getloadavg", lambda: (7.5, 5.0, 3.0))
    assert wait_quietly_when_busy() and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's choice is kept
    assert not wait_quietly_when_busy() and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_hyper_thread_siblings_count_once(tmp_path) -> None:
    from refine_cli.threads import usable_cpus

    allowed = sorted(os.sched_getaffinity(0))
    for cpu in allowed:  # every allowed CPU shares its core with the next one: half as many cores
        folder = tmp_path / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        folder.joinpath("thread_siblings_list").write_text(f"{cpu // 2 * 2}-{cpu // 2 * 2 + 1}\n")
    assert usable_cpus(tmp_path) == len({cpu // 2 for cpu in allowed})
    assert usable_cpus(tmp_path / "absent") == len(allowed)  # no topology: every CPU counts


@pytest.mark.parametrize(("short", "work"), [(96, None), (1024, None), (1080, 640), (3000, 640)])
def test_large_photos_get_a_working_short_side(short: int, work: int | None) -> None:
    assert own_data.plan_work_side(sizes(short)) == work
    assert own_data.plan_work_side(None) is None  # no statistics: the images' own size
