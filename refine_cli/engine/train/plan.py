"""What `refine train` tells the user about the run it starts: the plan line, and the time it will take.

The plan line comes before step 1 (model, crop, batch, steps, epochs, how the weights start, device
and threads). After ESTIMATE_AFTER steps the speed is known, and `estimate_line` says how long the
whole run will take; a CPU run over LONG_RUN_S gets the options that shorten it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from refine_cli.threads import describe_waiting

ESTIMATE_AFTER = 20  # steps timed before the estimate (the first ESTIMATE_SKIP are start-up, not counted)
ESTIMATE_SKIP = 2
LONG_RUN_S = 2 * 3600.0
SMALL_MODEL = "lw-refinenet-mobilenetv2"


def describe_start(cfg: Any) -> str:
    """How the weights start: ImageNet, a file, a checkpoint, or from scratch (BatchNorm trained or frozen)."""
    model = cfg.model
    if model.init:
        return f"from checkpoint {model.init}"
    if model.backbone_weights:
        return f"backbone from {model.backbone_weights}"
    if model.pretrained_backbone:
        return "ImageNet backbone" + (", BN frozen" if model.freeze_bn else "")
    optim = cfg.optim
    clip = f", grad clip {optim.grad_clip:g}" if optim.grad_clip else ""
    return f"from scratch (no ImageNet init; BN {'frozen' if model.freeze_bn else 'trained'}{clip})"


def plan_line(cfg: Any, info: dict[str, Any], reason: str | None = None) -> str:
    """One line: model (why), crop, min side, batch, steps, epochs, start, lr schedule, device, threads."""
    data, optim = cfg.data, cfg.optim
    model = f"{cfg.model.name} ({reason})" if reason else cfg.model.name
    total, per_epoch = info["total_steps"], info["steps_per_epoch"]
    processes = f" x {info['world_size']} processes" if info["world_size"] > 1 else ""
    min_side = f", min side {data.min_short_side}" if data.min_short_side else ""
    if data.max_short_side:
        min_side += f", larger images worked at short side {data.max_short_side}"
    warmup = f" after {optim.warmup_iters} warm-up steps" if optim.warmup_iters else ""
    lr = f"lr {optim.encoder_lr:g}" + (f" (decoder x{optim.decoder_lr_mult:g})" if optim.decoder_lr_mult != 1 else "")
    return (
        f"plan: {model} | crop {data.crop}{min_side}, batch {data.batch}{processes} | {total:,} steps = "
        f"{total / per_epoch:g} epochs of {per_epoch} | {describe_start(cfg)} | {lr} {optim.schedule}{warmup} | "
        f"{info['device']}, {info['threads']} CPU thread(s) ({info['threads_why']}{describe_waiting()})"
    )


@dataclass(frozen=True)
class RunEstimate:
    """The whole run's time, from the seconds per step measured so far (validation not included)."""

    seconds_per_step: float
    total_steps: int
    steps_done: int
    device: str

    @property
    def remaining_s(self) -> float:
        return self.seconds_per_step * max(0, self.total_steps - self.steps_done)

    @property
    def total_s(self) -> float:
        return self.seconds_per_step * self.total_steps

    def steps_within(self, seconds: float) -> int:
        """How many steps fit in `seconds` at this speed (at least 1)."""
        return max(1, int(seconds / self.seconds_per_step))


def format_duration(seconds: float) -> str:
    """'45 s', '12 min', '2 h 05 min', '3 days 4 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} days {hours} h"


def estimate_line(estimate: RunEstimate) -> str:
    """'estimate: the whole run takes about 1 h 50 min (3.30 s/step x 2,000 steps; 1 h 48 min left) ...'."""
    return (
        f"estimate: the whole run takes about {format_duration(estimate.total_s)} "
        f"({estimate.seconds_per_step:.3g} s/step x {estimate.total_steps:,} steps; "
        f"{format_duration(estimate.remaining_s)} left, validation not included)"
    )


def shorten_advice(estimate: RunEstimate, model: str) -> str | None:
    """For a CPU run longer than LONG_RUN_S: the options that shorten it (a smaller model, fewer steps, a GPU)."""
    if not estimate.device.startswith("cpu") or estimate.total_s <= LONG_RUN_S:
        return None
    options = []
    if model != SMALL_MODEL:
        options.append(f"--model {SMALL_MODEL} (about 4x fewer operations per image)")
    options.append(f"--iters {estimate.steps_within(LONG_RUN_S - 60):,} (fits in about 2 h at this speed)")
    options.append("a GPU (--device cuda; tens of times faster)")
    return f"over 2 h on a CPU; to shorten it: {'; '.join(options)}"


class StepTimer:
    """Times the steps of this session and produces the estimate once, after ESTIMATE_AFTER of them."""

    def __init__(self, total_steps: int, start_step: int, device: str) -> None:
        self.total_steps, self.start_step, self.device = total_steps, start_step, device
        self.started: float | None = None
        self.excluded = 0.0
        self.done = False

    def exclude(self, seconds: float) -> None:
        """Time spent between steps on something else (validation, a checkpoint): not a step's cost."""
        if self.started is not None:
            self.excluded += seconds

    def step(self, step: int, now: float) -> RunEstimate | None:
        """Call after every step with time.perf_counter(); returns the estimate once, else None."""
        done = step - self.start_step
        if done == ESTIMATE_SKIP:
            self.started = now
        if self.done or self.started is None or done < ESTIMATE_AFTER:
            return None
        self.done = True
        per_step = max(0.0, now - self.started - self.excluded) / (done - ESTIMATE_SKIP)
        return RunEstimate(per_step, self.total_steps, step, self.device)


def non_finite_remedies(cfg: Any, last_checkpoint: str | None) -> str:
    """What to change for the run a non-finite loss stopped, from its own settings (AMP named only when on)."""
    optim, model = cfg.optim, cfg.model
    remedies = []
    if cfg.train.amp == "fp16":
        remedies.append("use --amp bf16 or --amp off (fp16 overflows)")
    elif cfg.train.amp == "bf16":
        remedies.append("try --amp off")
    remedies.append(f"lower the learning rate (--lr {optim.encoder_lr / 10:g})")
    if optim.grad_clip is None:
        remedies.append("clip the gradients (--grad-clip 5)")
    if not optim.warmup_iters:
        remedies.append("warm up (--set optim.warmup_iters=100)")
    scratch = not (model.pretrained_backbone or model.backbone_weights or model.init)
    if scratch and model.freeze_bn:
        remedies.append("train BatchNorm from scratch (--set model.freeze_bn=false)")
    if optim.decoder_lr_mult > 1 and scratch:
        remedies.append("one learning rate for a network trained from scratch (--decoder-lr-mult 1)")
    again = f"; then continue with --resume {last_checkpoint} and the change" if last_checkpoint else ""
    return "; ".join(remedies) + again
