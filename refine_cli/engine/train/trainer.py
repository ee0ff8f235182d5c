"""`refine train`: the LW-RefineNet training loop, single process or DDP under torchrun.

Per step: uint8 crops from the loader -> device -> ImageNet normalisation -> model (autocast when
asked) -> logits upsampled to the label size -> cross-entropy ignoring 255 -> SGD (encoder/decoder
groups) -> per-step schedule. Validation uses the same `evaluate` as `refine eval` (sharded over
ranks, no image counted twice) at `refine eval`'s default precision, strict fp32 (TF32 off on CUDA,
whatever --amp trains with), so a run's val mIoU is what `refine eval best.pt` gives (up to
BN-folding rounding). Only rank 0 writes files. The step counter, not the epoch, is the unit of
progress, so `--iters`, `--epochs` and resuming in the middle of an epoch are one code path; what
last.pt records for an exact resume is written and read by `train_resume`.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from refine_cli.data.load.dataset import SegmentationDataset
from refine_cli.data.load.loader import build_train_loader, epoch_sampler
from refine_cli.data.load.transforms import TrainTransform
from refine_cli.engine.infer.model_prep import preferred_memory_format
from refine_cli.engine.train import distributed as dist_utils
from refine_cli.engine.train import run_files
from refine_cli.engine.train.config import TrainConfig
from refine_cli.engine.train.distributed import DistContext
from refine_cli.engine.train.optim import build_optimizer, build_scheduler
from refine_cli.engine.train.plan import RunEstimate, StepTimer, non_finite_remedies
from refine_cli.engine.train.resume import apply_resume_record, resume_record
from refine_cli.engine.train.run_log import TrainLog
from refine_cli.engine.train.schedules import LrSchedule
from refine_cli.engine.train.setup import build_model, check_classes, open_dataset
from refine_cli.engine.train.step import NonFiniteLoss, TrainStep
from refine_cli.errors import RefineError
from refine_cli.fileio import check_writable_folder, write_text_atomic
from refine_cli.models import freeze_batchnorm_stats
from refine_cli.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from refine_cli.threads import apply_threads


class TrainCallbacks:
    """Hooks for a progress display; every method is optional. Called on rank 0 only."""

    def on_start(self, total_steps: int, start_step: int, info: dict[str, Any]) -> None: ...
    def on_step(self, step: int, stats: dict[str, Any]) -> None: ...
    def on_estimate(self, estimate: RunEstimate) -> None: ...
    def on_validation_start(self, step: int) -> None: ...
    def on_validation(self, step: int, row: dict[str, Any]) -> None: ...
    def on_checkpoint(self, step: int, path: Path) -> None: ...


@dataclass
class TrainSummary:
    """What a finished (or resumed-and-finished) run reports."""

    out_dir: str
    model: str
    dataset: str
    steps: int
    epochs: float
    best_miou: float | None
    best_step: int | None
    last_val: dict[str, Any] | None
    train_seconds: float
    images_per_second: float
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Trainer:
    """Runs one training job described by a resolved `TrainConfig` into the folder `out_dir`."""

    def __init__(
        self,
        cfg: TrainConfig,
        out_dir: Path,
        resume_from: Path | None = None,
        callbacks: TrainCallbacks | None = None,
        ctx: DistContext | None = None,
    ) -> None:
        self.cfg, self.out_dir, self.resume_from = cfg, Path(out_dir), resume_from
        self.callbacks = callbacks or TrainCallbacks()
        self.ctx = ctx or dist_utils.init_distributed(cfg.train.device)
        self.metrics = run_files.MetricsLog(self.out_dir, enabled=self.ctx.is_main)
        self.save_schedule = run_files.SaveSchedule(cfg.train.save_every_steps, cfg.train.save_every_minutes)
        self.log = TrainLog(self.out_dir, enabled=self.ctx.is_main)  # TensorBoard + curves.png
        self.notes: list[str] = []

    # ----------------------------------------------------------------- setup
    def _prepare_out_dir(self) -> None:
        def check() -> None:
            check_writable_folder(self.out_dir)
            if self.resume_from is None and (self.out_dir / run_files.LAST).exists():
                raise RefineError(
                    f"{self.out_dir} already holds a training run",
                    hint=f"continue it with --resume {self.out_dir}, or choose another --out",
                )

        error = None
        if self.ctx.is_main:
            try:
                check()
            except RefineError as caught:
                error = (caught.message, caught.hint)
        error = dist_utils.broadcast_object(error, self.ctx)
        if error:
            raise RefineError(*error)

    def _setup(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        if cfg.train.amp == "fp16" and ctx.device.type != "cuda":
            raise RefineError("--amp fp16 needs a CUDA device", hint="use --amp bf16 on the CPU, or --amp off")
        self.threads = apply_threads(cfg.train.threads, workers=cfg.data.workers)
        torch.manual_seed(cfg.train.seed + ctx.rank)
        np.random.seed((cfg.train.seed + ctx.rank) % 2**32)
        random.seed(cfg.train.seed + ctx.rank)
        if ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick the fastest kernels
        self.source = open_dataset(cfg)
        weights = cfg.train.class_weights
        if weights is not None and len(weights) != self.source.meta.num_classes:
            raise RefineError(f"train.class_weights has {len(weights)} values but the dataset has "
                              f"{self.source.meta.num_classes} classes", hint="give one weight per class")  # fmt: skip
        self._prepare_out_dir()
        resume = load_checkpoint(self.resume_from) if self.resume_from else None
        if resume is not None:
            check_classes(resume, self.source, "checkpoint")
        model, notes = build_model(cfg, self.source, ctx)
        self.notes += notes
        if cfg.model.freeze_bn:
            freeze_batchnorm_stats(model)
        self.model = model.to(ctx.device, memory_format=preferred_memory_format(ctx.device))
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.loader = self._build_loader()
        self.steps_per_epoch = epoch_sampler(self.loader).batches_per_epoch
        loop = cfg.train
        self.total_steps = loop.iters if loop.iters is not None else loop.epochs * self.steps_per_epoch
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.total_steps)
        self.restart_steps = LrSchedule.from_config(cfg.optim, self.total_steps).momentum_restarts(cfg.optim)
        self.step_fn = self._build_step()
        self.step, self.best_miou, self.best_step, self.elapsed = 0, None, None, 0.0
        self.last_val: dict[str, Any] | None = None
        if resume is not None:
            self._restore(resume)
        if ctx.is_main:
            write_text_atomic(self.out_dir / run_files.CONFIG_FILE, cfg.to_yaml())

    def _build_loader(self) -> torch.utils.data.DataLoader:
        """Augmented crops of the training split, sharded over the ranks, seeded for an exact resume."""
        cfg, ctx = self.cfg, self.ctx
        transform = TrainTransform(
            crop=cfg.data.crop,
            scale_min=cfg.data.scale_min,
            scale_max=cfg.data.scale_max,
            min_short_side=cfg.data.min_short_side,
            max_short_side=cfg.data.max_short_side,
            hflip=cfg.data.hflip,
            ignore_index=self.source.meta.ignore_index,
        )
        dataset = SegmentationDataset(self.source, cfg.data.train_split, transform, seed=cfg.train.seed)
        return build_train_loader(
            dataset, cfg.data.batch, cfg.data.workers, cfg.train.seed, ctx.rank, ctx.world_size,
            pin_memory=ctx.device.type == "cuda",
        )  # fmt: skip

    def _build_step(self) -> TrainStep:
        """The optimiser step, over the DDP-wrapped model when there are several processes."""
        cfg, ctx = self.cfg, self.ctx
        wrapped = self.model
        if ctx.enabled:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        return TrainStep(
            wrapped, self.optimizer, self.scheduler, ctx, amp=cfg.train.amp, grad_clip=cfg.optim.grad_clip,
            ignore_index=self.source.meta.ignore_index, class_weights=cfg.train.class_weights,
        )  # fmt: skip

    def _restore(self, ck: Checkpoint) -> None:
        resumed = apply_resume_record(
            ck, self.model, self.optimizer, self.scheduler, self.step_fn.scaler, self.ctx, self.steps_per_epoch
        )
        self.step, self.best_miou, self.best_step = resumed.step, resumed.best_miou, resumed.best_step
        self.last_val, self.elapsed = resumed.last_val, resumed.elapsed
        self.notes += resumed.notes
        self.metrics.load_until(self.step)

    # ------------------------------------------------------------------ loop
    def run(self) -> TrainSummary:
        created = not self.out_dir.exists()
        try:
            try:
                self._setup()
            except BaseException:
                # a run that failed before it started leaves no empty run folder behind
                if created and self.ctx.is_main and self.out_dir.is_dir() and not any(self.out_dir.iterdir()):
                    self.out_dir.rmdir()
                raise
            return self._loop()
        finally:
            self.log.close()
            dist_utils.shutdown(self.ctx)

    def _is_val_point(self, step: int) -> bool:
        unit = self.cfg.train.val_unit
        if unit == "auto":
            unit = "steps" if self.cfg.train.iters is not None else "epochs"
        every = self.cfg.train.val_every * (self.steps_per_epoch if unit == "epochs" else 1)
        return step % every == 0 or step == self.total_steps

    def _loop(self) -> TrainSummary:
        cfg, ctx, main = self.cfg, self.ctx, self.ctx.is_main
        info = {
            "steps_per_epoch": self.steps_per_epoch, "world_size": ctx.world_size, "device": str(ctx.device),
            "total_steps": self.total_steps, "threads": self.threads[0], "threads_why": self.threads[1],
        }  # fmt: skip
        if main:
            self.callbacks.on_start(self.total_steps, self.step, info)
        timer = StepTimer(self.total_steps, self.step, str(ctx.device))
        sampler = epoch_sampler(self.loader)
        images_per_step = cfg.data.batch * ctx.world_size
        window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
        run_start, start_step, start_elapsed = time.perf_counter(), self.step, self.elapsed
        while self.step < self.total_steps:
            sampler.set_epoch(self.step // self.steps_per_epoch, self.step % self.steps_per_epoch)
            for batch in self.loader:
                problem = next((p for p in batch["problem"] if p), "")
                try:
                    loss = self.step_fn(batch["image"], batch["label"], problem)
                except NonFiniteLoss as error:
                    raise self._non_finite(error) from None
                self.step += 1
                if self.step in self.restart_steps:  # a new stage starts as with a fresh optimiser
                    for state in self.optimizer.state.values():
                        state.pop("momentum_buffer", None)
                window_loss, window_steps = window_loss + loss, window_steps + 1
                if main:
                    now = time.perf_counter()
                    stats = {"loss": loss, "lr": self.optimizer.param_groups[0]["lr"], "epoch": self.epoch}
                    stats["img_s"] = images_per_step * window_steps / max(now - window_start, 1e-9)
                    self.callbacks.on_step(self.step, stats)
                    estimate = timer.step(self.step, now)
                    if estimate is not None:
                        self.callbacks.on_estimate(estimate)
                    if self.step % cfg.train.log_every == 0:
                        self.metrics.append(self._row("train", **{**stats, "loss": window_loss / window_steps}))
                        self.log.train(self.step, window_loss / window_steps, self.optimizer)
                        window_loss, window_steps, window_start = 0.0, 0, now
                val_point = self._is_val_point(self.step)
                if val_point or self.save_schedule.due(self.step, self._agree):
                    self.elapsed += time.perf_counter() - run_start
                    run_start = time.perf_counter()
                    self._validate_and_save() if val_point else self._save_resume_state()
                    timer.exclude(time.perf_counter() - run_start)  # the estimate counts training steps only
                if self.step >= self.total_steps:
                    break
        self.elapsed += time.perf_counter() - run_start
        self.log.finish(self.metrics.rows)
        return self._summary(self.step - start_step, self.elapsed - start_elapsed, images_per_step)

    def _summary(self, steps_run: int, seconds_run: float, images_per_step: int) -> TrainSummary:
        """What the run reports; img/s is this process's steps over this process's time: after --resume,
        train_seconds also counts the earlier runs, whose steps this process did not run."""
        return TrainSummary(
            out_dir=str(self.out_dir),
            model=self.cfg.model.name,
            dataset=self.source.meta.name,
            steps=self.step,
            epochs=round(self.epoch, 3),
            best_miou=self.best_miou,
            best_step=self.best_step,
            last_val=self.last_val,
            train_seconds=round(self.elapsed, 2),
            images_per_second=round(steps_run * images_per_step / max(seconds_run, 1e-9), 2),
            notes=self.notes,
        )

    @property
    def epoch(self) -> float:
        return self.step / self.steps_per_epoch

    def _row(self, kind: str, **values: Any) -> dict[str, Any]:
        row = {"kind": kind, "step": self.step, "epoch": round(self.epoch, 4)}
        row.update({k: v for k, v in values.items() if k not in ("epoch",)})
        row["elapsed_s"] = round(self.elapsed, 2)
        return row

    def _non_finite(self, error: NonFiniteLoss) -> RefineError:
        last = self.out_dir / run_files.LAST
        kept = f"the last good checkpoint {last} is kept" if last.exists() else "no checkpoint had been written yet"
        return RefineError(
            f"{error.message} at step {self.step + 1} (epoch {self.epoch:.2f}); training stopped and {kept}",
            hint=non_finite_remedies(self.cfg, str(self.out_dir) if last.exists() else None),
        )

    def _validate(self) -> dict[str, Any] | None:
        if not self.cfg.data.val_split:
            return None
        from refine_cli.engine.eval.evaluator import evaluate
        from refine_cli.engine.infer.loop import InferenceConfig
        from refine_cli.engine.infer.tta import work_short_side

        if self.ctx.is_main:
            self.callbacks.on_validation_start(self.step)
        autotune = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False  # validation images vary in size: autotuning each would crawl
        try:
            report = evaluate(
                self.model,
                self.source,
                self.cfg.data.val_split,
                InferenceConfig(short_side=work_short_side(self.cfg.data.max_short_side)),
                device=self.ctx.device,
                progress=False,
                distributed=self.ctx.enabled,
                on_sample=self.log.sample_keeper(),
            )
        finally:
            torch.backends.cudnn.benchmark = autotune
        self.log.validation(self.step, report, self.source.meta)
        self.model.train()
        if self.cfg.model.freeze_bn:
            freeze_batchnorm_stats(self.model)
        summary = report.scores.summary()
        return {k: summary[k] for k in ("miou", "pixel_acc", "mean_acc", "fwiou")}

    def _agree(self, decision: bool) -> bool:
        """Rank 0's decision on every rank (all ranks must join a checkpoint's RNG gather together)."""
        return bool(dist_utils.broadcast_object(decision, self.ctx))

    def _validate_and_save(self) -> None:
        scores = self._validate()
        improved = False
        if scores is not None:
            self.last_val = {**scores, "step": self.step, "epoch": round(self.epoch, 4)}
            miou = scores["miou"] if scores["miou"] is not None else -1.0
            improved = self.best_miou is None or miou > self.best_miou
            if improved:
                self.best_miou, self.best_step = miou, self.step
        if self.ctx.is_main and scores is not None:
            row = self._row("val", **scores)
            self.metrics.append(row)
            self.callbacks.on_validation(self.step, row)
        self._save_resume_state(best=improved)

    def _save_resume_state(self, best: bool = False) -> None:
        """Write last.pt with everything an exact resume needs (and best.pt first when `best`)."""
        rng = dist_utils.all_gather_object(run_files.capture_rng(), self.ctx)
        if not self.ctx.is_main:
            return
        resume = resume_record(
            self.optimizer,
            self.scheduler,
            self.step_fn.scaler,
            step=self.step,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            world_size=self.ctx.world_size,
            best_miou=self.best_miou,
            best_step=self.best_step,
            elapsed=self.elapsed,
            rng=rng,
        )
        # metrics, then best, then last: a kill between writes leaves files that are newer than last.pt,
        # never older, and a resume redoes (and rewrites) whatever came after last.pt
        self.metrics.flush()
        if best:
            self._save(run_files.BEST, {"step": self.step, "epoch": self.epoch})
        self._save(run_files.LAST, {"resume": resume})
        self.save_schedule.saved()

    def _save(self, name: str, extra: dict[str, Any]) -> None:
        meta = self.source.meta
        path = self.out_dir / name
        save_checkpoint(
            path,
            model_name=self.cfg.model.name,
            model=self.model,
            num_classes=meta.num_classes,
            classes=list(meta.classes),
            palette=[list(c) for c in meta.palette[: meta.num_classes]],
            train_config=self.cfg.to_dict(),
            metrics=self.last_val,
            # The dataset's own facts travel with the weights, e.g. Cityscapes' trainId -> labelId map
            # that `refine predict --label-ids` needs for benchmark-server submissions.
            extra={**extra, "dataset": {"name": meta.name, "extra": dict(meta.extra)}},
        )
        self.callbacks.on_checkpoint(self.step, path)


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    resume_from: str | Path | None = None,
    callbacks: TrainCallbacks | None = None,
) -> TrainSummary:
    """Train according to `cfg` into `out_dir` (continuing `resume_from`'s last.pt when given)."""
    checkpoint = run_files.find_resume_checkpoint(resume_from) if resume_from else None
    return Trainer(cfg, Path(out_dir), checkpoint, callbacks).run()
