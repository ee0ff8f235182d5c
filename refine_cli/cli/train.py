"""`refine train`: parse the options, resolve the run's config (cli/_train_config.py), train, report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from refine_cli.cli._console import emit_json, err, out, warn
from refine_cli.cli._options import JsonOpt
from refine_cli.cli._train_config import resolve_data, resolve_run
from refine_cli.config import MINIMUMS

if TYPE_CHECKING:
    from refine_cli.engine.trainer import TrainSummary

_EXAMPLES = """
Examples:

  refine train --recipe demo-shapes --data data/shapes --out runs/demo
  refine train --recipe lw-voc --data data/voc --train-split train_aug --pretrained-backbone --out runs/voc
  refine train --recipe lw-voc --data data/voc --init runs/sbd/best.pt --out runs/voc-stage3
  refine train --resume runs/voc
  torchrun --nproc-per-node 4 -m refine_cli train --recipe lw-nyud --data data/nyudv2 --out runs/nyud
"""

Opt = Optional  # noqa: UP045 - typer evaluates annotations at runtime


def train_command(
    ctx: typer.Context,
    data: Annotated[
        Opt[str], typer.Option("--data", help="Unified dataset folder (or its name under $REFINE_DATA).")
    ] = None,
    out_dir: Annotated[
        Opt[Path], typer.Option("--out", help="Run folder: config.yaml, last.pt, best.pt, metrics.")
    ] = None,
    recipe: Annotated[Opt[str], typer.Option("--recipe", help="Named recipe (see below) or a YAML file.")] = None,
    resume: Annotated[Opt[Path], typer.Option("--resume", help="Continue the run in this folder exactly.")] = None,
    model: Annotated[Opt[str], typer.Option("--model", help="Model name (refine models).")] = None,
    pretrained_backbone: Annotated[
        Opt[bool], typer.Option("--pretrained-backbone/--no-pretrained-backbone", help="ImageNet backbone weights.")
    ] = None,
    backbone_weights: Annotated[
        Opt[Path], typer.Option("--backbone-weights", help="Local backbone state_dict.")
    ] = None,
    init: Annotated[Opt[Path], typer.Option("--init", help="Start from this checkpoint (staged training).")] = None,
    train_split: Annotated[Opt[str], typer.Option("--train-split", help="Split to train on.")] = None,
    val_split: Annotated[Opt[str], typer.Option("--val-split", help="Split to validate on ('none' to skip).")] = None,
    epochs: Annotated[
        Opt[int], typer.Option("--epochs", min=MINIMUMS["train.epochs"], help="Train for N epochs.")
    ] = None,
    iters: Annotated[
        Opt[int], typer.Option("--iters", min=MINIMUMS["train.iters"], help="Train for N optimiser steps.")
    ] = None,
    val_every: Annotated[
        Opt[int],
        typer.Option(
            "--val-every",
            min=MINIMUMS["train.val_every"],
            help="Validate + checkpoint every N epochs (N steps with --iters).",
        ),
    ] = None,
    save_every_steps: Annotated[
        Opt[int],
        typer.Option(
            "--save-every-steps",
            min=MINIMUMS["train.save_every_steps"],
            help="Also write last.pt every N steps (0 = only at validation points).",
        ),
    ] = None,
    save_every_minutes: Annotated[
        Opt[float],
        typer.Option(
            "--save-every-minutes",
            min=MINIMUMS["train.save_every_minutes"],
            help="Also write last.pt every M minutes of training (default 15; 0 = off).",
        ),
    ] = None,
    batch: Annotated[
        Opt[int], typer.Option("--batch", min=MINIMUMS["data.batch"], help="Images per step per process.")
    ] = None,
    crop: Annotated[
        Opt[int], typer.Option("--crop", min=MINIMUMS["data.crop"], help="Square training crop size.")
    ] = None,
    workers: Annotated[
        Opt[int], typer.Option("--workers", min=MINIMUMS["data.workers"], help="Data loader processes.")
    ] = None,
    lr: Annotated[
        Opt[float], typer.Option("--lr", help="Encoder learning rate (decoder: x --decoder-lr-mult).")
    ] = None,
    decoder_lr_mult: Annotated[Opt[float], typer.Option("--decoder-lr-mult", help="Decoder lr / encoder lr.")] = None,
    schedule: Annotated[Opt[str], typer.Option("--schedule", help="multistep (LW stages), poly or constant.")] = None,
    weight_decay: Annotated[Opt[float], typer.Option("--weight-decay", help="SGD weight decay.")] = None,
    grad_clip: Annotated[Opt[float], typer.Option("--grad-clip", help="Clip the global gradient norm.")] = None,
    amp: Annotated[Opt[str], typer.Option("--amp", help="Mixed precision: off, bf16 or fp16 (CUDA).")] = None,
    seed: Annotated[Opt[int], typer.Option("--seed", help="Random seed.")] = None,
    device: Annotated[Opt[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    class_weights: Annotated[
        Opt[str],
        typer.Option(
            "--class-weights",
            metavar="auto|none|W0,W1,..",
            help="Weight the loss per class for imbalanced data: auto = median-frequency balancing from the "
            "training split's pixel counts (clipped to 0.1-10), or one number per class.",
        ),
    ] = None,
    settings: Annotated[
        Opt[list[str]], typer.Option("--set", help="Any config field: --set optim.poly_power=1.0 (repeatable).")
    ] = None,
    json_out: JsonOpt = None,
) -> None:
    """Train a model: the LW-RefineNet recipe by default (SGD, decoder lr x10, frozen BN, random scale/crop/flip)."""
    from refine_cli.config import resolve_config
    from refine_cli.engine.trainer import train
    from refine_cli.locks import hold_lock

    main = int(os.environ.get("RANK", "0")) == 0
    if main and resume is not None and resume.exists():  # lock before reading the run's last.pt
        ctx.with_resource(hold_lock(resume if resume.is_dir() else resume.parent, "training run"))
    flags = {
        "data.root": resolve_data(data) if data is not None else None,
        "data.train_split": train_split,
        "data.val_split": val_split,
        "data.batch": batch,
        "data.crop": crop,
        "data.workers": workers,
        "model.name": model,
        "model.pretrained_backbone": pretrained_backbone,
        "model.backbone_weights": str(backbone_weights) if backbone_weights else None,
        "model.init": str(init) if init else None,
        "optim.encoder_lr": lr,
        "optim.decoder_lr_mult": decoder_lr_mult,
        "optim.schedule": schedule,
        "optim.weight_decay": weight_decay,
        "optim.grad_clip": grad_clip,
        "train.epochs": epochs,
        "train.iters": iters,
        "train.val_every": val_every,
        "train.save_every_steps": save_every_steps,
        "train.save_every_minutes": save_every_minutes,
        "train.amp": amp,
        "train.seed": seed,
        "train.device": device,
    }
    cfg, out_dir, resume_from, note = resolve_run(flags, recipe, resume, out_dir, settings, batch)
    _refuse_overlaps(cfg, recipe, out_dir, resume_from, json_out)
    if main and resume is None:  # one run per folder, held until the command ends
        ctx.with_resource(hold_lock(out_dir, "training run"))
    if note:
        err.print(f"note: {note}")
    if class_weights is not None:
        from refine_cli.data.unified import UnifiedDataset
        from refine_cli.engine.own_data import parse_class_weights

        weights = parse_class_weights(class_weights, UnifiedDataset(cfg.data.root), cfg.data.train_split)
        cfg = resolve_config(base=cfg.to_dict(), overrides={"train.class_weights": weights})
        if weights is not None:
            err.print(f"note: class weights {', '.join(f'{w:g}' for w in weights)}")
    with _RichProgress(enabled=main) as progress:
        summary = train(cfg, out_dir, resume_from=resume_from, callbacks=progress)
    if main:
        _print_summary(summary)
        if json_out is not None:
            emit_json(summary.to_json(), json_out)


def _refuse_overlaps(
    cfg: Any, recipe: str | None, out_dir: Path, resume_from: Path | None, json_out: str | None
) -> None:
    """The run folder and --json must not land on the dataset, recipe, --init or backbone weights (or a run file)."""
    from refine_cli.engine import run_files
    from refine_cli.engine.train_log import CURVES_FILE
    from refine_cli.guards import refuse_output_over_inputs

    inputs = {
        "dataset": cfg.data.root,
        "--recipe": recipe if recipe is not None and Path(recipe).is_file() else None,
        "--init": cfg.model.init,
        "--backbone-weights": cfg.model.backbone_weights,
        "resumed checkpoint": resume_from,
    }
    # a resumed run writes into the folder it reads from, by design
    refuse_output_over_inputs({"--out": None if resume_from else out_dir, "--json": json_out}, inputs)
    run_file_names = (
        run_files.LAST,
        run_files.BEST,
        run_files.CONFIG_FILE,
        run_files.METRICS_JSONL,
        run_files.METRICS_CSV,
        CURVES_FILE,
    )
    refuse_output_over_inputs({"--json": json_out}, {"run's file": [out_dir / name for name in run_file_names]})


class _RichProgress:
    """A Rich progress bar on stderr: steps, smoothed loss, img/s, lr, epoch, elapsed and ETA; validation lines.

    The loss shown is an exponential moving average (one step's loss jumps with every batch); the
    ETA is Rich's estimate from the recent steps/second.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.progress = None
        self.task = None
        self.loss: float | None = None

    def __enter__(self) -> _RichProgress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        if self.enabled:
            self.progress = Progress(
                TextColumn("[bold]train[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=err,
                transient=False,
            )
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def on_start(self, total_steps: int, start_step: int, info: dict[str, Any]) -> None:
        if self.progress is None:
            return
        self.task = self.progress.add_task("train", total=total_steps, completed=start_step, stats="")
        where = f"{info['world_size']} process(es) on {info['device']}, {info['steps_per_epoch']} steps/epoch"
        self.progress.console.print(f"training {total_steps} steps from step {start_step}: {where}")

    def on_step(self, step: int, stats: dict[str, Any]) -> None:
        if self.progress is not None and self.task is not None:
            loss = float(stats["loss"])
            self.loss = loss if self.loss is None else 0.9 * self.loss + 0.1 * loss
            text = (
                f"loss {self.loss:.4f} | {stats['img_s']:.1f} img/s | lr {stats['lr']:.2e} | epoch {stats['epoch']:.2f}"
            )
            self.progress.update(self.task, completed=step, stats=text)

    def on_validation_start(self, step: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, stats="validating...")

    def on_validation(self, step: int, row: dict[str, Any]) -> None:
        if self.progress is not None:
            miou = row.get("miou")
            shown = f"{miou:.4f}" if miou is not None else "n/a"
            self.progress.console.print(
                f"step {step} (epoch {row['epoch']:.2f}): val mIoU {shown}, pixel acc {_fmt(row.get('pixel_acc'))}, "
                f"mean acc {_fmt(row.get('mean_acc'))}"
            )
            if self.task is not None:
                self.progress.update(self.task, stats=f"val mIoU {shown}")

    def on_checkpoint(self, step: int, path: Path) -> None: ...


def _print_summary(summary: TrainSummary) -> None:
    from rich.table import Table

    for note in summary.notes:
        warn(note)
    table = Table(title="refine train", show_header=False)
    best = f"{summary.best_miou:.4f} (step {summary.best_step})" if summary.best_miou is not None else "n/a"
    # img/s is this process's; a resumed run that had already finished ran no step at all
    speed = f"{summary.images_per_second:.1f} img/s" if summary.images_per_second else "no step left to run"
    rows = [
        ("model / dataset", f"{summary.model} / {summary.dataset}"),
        ("run folder", summary.out_dir),
        ("steps / epochs", f"{summary.steps} / {summary.epochs:g}"),
        ("best val mIoU", best),
        ("last val mIoU", _fmt((summary.last_val or {}).get("miou"))),
        ("training time", f"{summary.train_seconds:.1f} s ({speed})"),
        ("TensorBoard", f"tensorboard --logdir {Path(summary.out_dir).parent}"),
    ]
    curves = Path(summary.out_dir) / "curves.png"
    if curves.is_file():
        rows.append(("curves", str(curves)))
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)


def _fmt(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "n/a"


def register(app: typer.Typer) -> None:
    from refine_cli.config import list_recipes

    app.command("train", help=f"{train_command.__doc__}\n\nRecipes: {', '.join(list_recipes())}.\n{_EXAMPLES}")(
        train_command
    )
