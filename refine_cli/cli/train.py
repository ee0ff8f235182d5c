"""`refine train`: parse the options, resolve the run's config (cli/_train_config.py), train, report."""

from __future__ import annotations

import inspect
import os
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from refine_cli.cli._console import emit_json, err, out, warn
from refine_cli.cli._options import JsonOpt
from refine_cli.cli._train_config import resolve_data, resolve_run
from refine_cli.engine.train.config import train_options

if TYPE_CHECKING:
    from refine_cli.engine.train.config import TrainConfig
    from refine_cli.engine.train.plan import RunEstimate
    from refine_cli.engine.train.trainer import TrainSummary

_EXAMPLES = """
Examples:

  refine train --recipe demo-shapes --data data/shapes --out runs/demo
  refine train --recipe lw-voc --data data/voc --train-split train_aug --pretrained-backbone --out runs/voc
  refine train --recipe lw-voc --data data/voc --init runs/sbd/best.pt --out runs/voc-stage3
  refine train --resume runs/voc
  torchrun --nproc-per-node 4 -m refine_cli train --recipe lw-nyud --data data/nyudv2 --out runs/nyud
"""

Opt = Optional  # noqa: UP045 - typer evaluates annotations at runtime
_RECIPE_HELP = (
    "A named recipe (see Recipes above) or a YAML file. Without it: the built-in LW-RefineNet settings, "
    "sized to the data for a `refine prepare custom` dataset."
)


def train_command(
    ctx: typer.Context,
    out_dir: Annotated[
        Opt[Path], typer.Option("--out", help="Run folder: config.yaml, last.pt, best.pt, metrics.")
    ] = None,
    recipe: Annotated[Opt[str], typer.Option("--recipe", help=_RECIPE_HELP)] = None,
    resume: Annotated[Opt[Path], typer.Option("--resume", help="Continue the run in this folder exactly.")] = None,
    class_weights: Annotated[
        Opt[str],
        typer.Option(
            "--class-weights",
            metavar="auto|none|W0,W1,..",
            help="Weight the loss per class for imbalanced data: auto = median-frequency balancing from the "
            "training split's pixel counts (clipped to 0.1-10), or one number per class.",
            rich_help_panel="Training",
            show_default="none",
        ),
    ] = None,
    settings: Annotated[
        Opt[list[str]], typer.Option("--set", help="Any config field: --set optim.poly_power=1.0 (repeatable).")
    ] = None,
    json_out: JsonOpt = None,
    **options: Any,
) -> None:
    """Train a model: the LW-RefineNet recipe by default (SGD, decoder lr x10, frozen BN, random scale/crop/flip).

    `options` are the config flags, one per field of the train options table (config.train_options).
    """
    from refine_cli.engine.train.trainer import train
    from refine_cli.locks import hold_lock

    main = int(os.environ.get("RANK", "0")) == 0
    if main and resume is not None and resume.exists():  # lock before reading the run's last.pt
        ctx.with_resource(hold_lock(resume if resume.is_dir() else resume.parent, "training run"))
    flags = {key: options[_parameter_name(key)] for key, _, _ in train_options()}
    if flags["data.root"] is not None:
        flags["data.root"] = resolve_data(flags["data.root"])
    cfg, out_dir, resume_from, note, model_reason = resolve_run(flags, recipe, resume, out_dir, settings)
    _refuse_overlaps(cfg, recipe, out_dir, resume_from, json_out)
    if main and resume is None:  # one run per folder, held until the command ends
        ctx.with_resource(hold_lock(out_dir, "training run"))
    if note:
        err.print(f"note: {note}")
    if class_weights is not None:
        cfg = with_class_weights(cfg, class_weights)
    with _RichProgress(enabled=main, cfg=cfg, model_reason=model_reason) as progress:
        summary = train(cfg, out_dir, resume_from=resume_from, callbacks=progress)
    if main:
        _print_summary(summary)
        if json_out is not None:
            emit_json(summary.to_json(), json_out)


def _parameter_name(key: str) -> str:
    """`data.crop` -> `data__crop`: a Python name for a config key."""
    return key.replace(".", "__")


def _config_parameters() -> list[inspect.Parameter]:
    """One keyword parameter, with its typer.Option, per flag of the train options table."""
    from refine_cli.engine.train.config import TrainConfig

    builtin = TrainConfig().to_dict()
    parameters = []
    for key, hint, spec in train_options():
        kind = next(arg for arg in (typing.get_args(hint) or (hint,)) if arg is not type(None))
        decls = (f"{spec.flag}/--no-{spec.flag[2:]}",) if kind is bool else (spec.flag,)
        section, name = key.split(".")
        settings: dict[str, Any] = {"help": spec.help, "rich_help_panel": spec.panel,
                                    "show_default": _default_shown(spec.flag, builtin[section][name])}  # fmt: skip
        if spec.minimum is not None:
            settings["min"] = kind(spec.minimum)
        if spec.metavar or spec.choices:
            settings["metavar"] = spec.metavar or "|".join(spec.choices or ())
        annotation = Annotated[Opt[kind], typer.Option(*decls, **settings)]
        parameters.append(inspect.Parameter(_parameter_name(key), inspect.Parameter.KEYWORD_ONLY, default=None,
                                            annotation=annotation))  # fmt: skip
    return parameters


def _default_shown(flag: str, value: Any) -> str | bool:
    """`[default: 500 or the recipe's]`: the option is None until given, so its help names the built-in value.

    A recipe (or the own-data sizing, or a resumed run's config) sets its own; False = nothing to show.
    """
    if isinstance(value, bool):
        value = flag[2:] if value else f"no-{flag[2:]}"
    return False if value is None or value == "" else f"{value} or the recipe's"


def _generated_signature() -> inspect.Signature:
    """train_command's own parameters with `**options` replaced by the generated config flags."""
    own = [
        p for p in inspect.signature(train_command, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD
    ]
    first_keyword = next(i for i, p in enumerate(own) if p.name == "class_weights")
    ordered = own[:first_keyword] + [p.replace(kind=p.KEYWORD_ONLY) for p in own[first_keyword:]]
    ordered = [p.replace(kind=p.KEYWORD_ONLY) if p.name != "ctx" else p for p in ordered]
    return inspect.Signature([*ordered, *_config_parameters()], return_annotation=None)


def with_class_weights(cfg: TrainConfig, text: str) -> TrainConfig:
    """The config with --class-weights applied (auto = from the training split's pixel counts)."""
    from refine_cli.data.format.unified import UnifiedDataset
    from refine_cli.engine.train.config import resolve_config
    from refine_cli.engine.train.own_data import parse_class_weights

    weights = parse_class_weights(text, UnifiedDataset(cfg.data.root), cfg.data.train_split)
    if weights is not None:
        err.print(f"note: class weights {', '.join(f'{w:g}' for w in weights)}")
    return resolve_config(base=cfg.to_dict(), overrides={"train.class_weights": weights})


def _refuse_overlaps(
    cfg: Any, recipe: str | None, out_dir: Path, resume_from: Path | None, json_out: str | None
) -> None:
    """The run folder and --json must not land on the dataset, recipe, --init or backbone weights (or a run file)."""
    from refine_cli.engine.train import run_files
    from refine_cli.engine.train.run_log import CURVES_FILE
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

    def __init__(self, enabled: bool, cfg: TrainConfig, model_reason: str | None = None) -> None:
        self.enabled, self.cfg, self.model_reason = enabled, cfg, model_reason
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
        from rich.markup import escape

        from refine_cli.engine.train.plan import plan_line

        self.task = self.progress.add_task("train", total=total_steps, completed=start_step, stats="")
        self.progress.console.print(escape(plan_line(self.cfg, info, self.model_reason)))
        if start_step:
            self.progress.console.print(f"continuing from step {start_step:,}")

    def on_estimate(self, estimate: RunEstimate) -> None:
        from refine_cli.engine.train.plan import estimate_line, shorten_advice

        if self.progress is not None:
            self.progress.console.print(estimate_line(estimate))
            advice = shorten_advice(estimate, self.cfg.model.name)
            if advice:
                self.progress.console.print(f"[yellow]note:[/yellow] {advice}")

    def on_step(self, step: int, stats: dict[str, Any]) -> None:
        if self.progress is not None and self.task is not None:
            loss = float(stats["loss"])
            self.loss = loss if self.loss is None else 0.9 * self.loss + 0.1 * loss
            text = (
                f"loss {format_loss(self.loss)} | {stats['img_s']:.1f} img/s | lr {stats['lr']:.2e} | "
                f"epoch {stats['epoch']:.2f}"
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


def format_loss(value: float) -> str:
    """0.4213 for ordinary losses; 1.014e+17 for huge (or tiny) ones, which fixed decimals make unreadable."""
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.3e}"


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
    from refine_cli.engine.train.config import list_recipes

    train_command.__signature__ = _generated_signature()  # type: ignore[attr-defined]
    summary = (train_command.__doc__ or "").split("\n\n")[0]
    defaults = (
        "A recipe sets every option at once and the flags given override it; `[default: X or the recipe's]` "
        "is refine's built-in value, which a recipe, the own-data sizing or a resumed run may replace."
    )
    recipes = f"Recipes: {', '.join(list_recipes())}."
    app.command("train", help=f"{summary}\n\n{recipes}\n\n{defaults}\n{_EXAMPLES}")(train_command)
