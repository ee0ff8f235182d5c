"""`refine eval`: score a checkpoint (with optional TTA/CRF) or a folder of saved predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from refine_cli.cli._console import emit_json, err, out, warn
from refine_cli.cli._inference_opts import CheckpointHelp, InferenceOptions, describe_settings, inference_command
from refine_cli.cli._options import JsonOpt, check_picture_folder

_EXAMPLES = """
Examples:

  refine eval --checkpoint runs/voc/best.pt --data data/voc --split val
  refine eval --checkpoint best.pt --data voc --msc --flip --json report.json
  refine eval --checkpoint rn101-voc-matlab.pt --data voc --msc refinenet --upsample bicubic   (the CVPR protocol)
  refine eval --pred my_predictions/ --data data/voc --split val
  refine eval --checkpoint best.pt --data voc --report reports/voc-val   (then open reports/voc-val/report.html)
"""


def resolve_dataset(data: str):  # noqa: ANN201 - a UnifiedDataset, imported lazily
    """--data is a dataset folder, or a name under $REFINE_DATA (./data)."""
    from refine_cli.cli._paths import dataset_path, default_root
    from refine_cli.data.format.unified import UnifiedDataset

    path = dataset_path(data)
    if not path.exists():
        from refine_cli.errors import RefineError

        raise RefineError(f"dataset {data} not found", hint=f"give its folder or a name under {default_root()}")
    return UnifiedDataset(path)


PredOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--pred", help="Instead of a model: score label PNGs DIR/<id>.png made by any tool."),
]
SavePredOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--save-pred", help="Also write the predicted label PNGs (palette) to DIR/<id>.png."),
]
LimitOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--limit", min=1, help="Only the first N images of the split (quick checks)."),
]
ReportOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--report",
        help="Also write DIR/report.html: per-class chart, confusion heatmap, worst/best images (opens offline).",
    ),
]


def eval_command(
    run: InferenceOptions,
    data: Annotated[str, typer.Option("--data", help="Unified dataset folder (or its name under $REFINE_DATA).")],
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", "-c", help=CheckpointHelp)] = None,  # noqa: UP045
    pred: PredOpt = None,
    split: Annotated[str, typer.Option("--split", help="Split to evaluate.")] = "val",
    save_pred: SavePredOpt = None,
    limit: LimitOpt = None,
    report_dir: ReportOpt = None,
    json_out: JsonOpt = None,
) -> None:
    """Evaluate on a dataset split: mIoU, pixel accuracy, mean accuracy, FWIoU and per-class IoU at label size."""
    from refine_cli.errors import RefineError
    from refine_cli.guards import refuse_output_over_inputs

    if (checkpoint is None) == (pred is None):
        raise RefineError("give exactly one of --checkpoint and --pred", hint="see `refine eval --help`")
    dataset = resolve_dataset(data)
    refuse_output_over_inputs(
        {"--json": json_out, "--save-pred": save_pred, "--report": report_dir},
        {"--checkpoint": checkpoint, "--pred": pred, "--data": dataset.path},
    )
    refuse_output_over_inputs({"--json": json_out}, {"--report": report_dir})  # the report's own files
    header = err if json_out == "-" else out  # keep stdout pure JSON with --json -
    inputs = {"--data": dataset.path, "--pred": pred, "--checkpoint": checkpoint, "--save-pred": save_pred}
    samples = _report_collector(report_dir, dataset, inputs)
    if pred is not None:
        _refuse_model_options({**run.given(), "--save-pred": save_pred is not None})
        from refine_cli.engine.eval.evaluator import score_predictions

        header.print(f"Scoring predictions in {pred} against {dataset.path} split {split}")
        report = score_predictions(pred, dataset, split, progress=err.is_terminal, limit=limit, on_sample=samples)
    else:
        report = _evaluate_checkpoint(run, checkpoint, dataset, split, header, samples, save_pred, limit)
    _finish(report, json_out, report_dir, samples, dataset)


def _evaluate_checkpoint(
    run: InferenceOptions,
    checkpoint: Path,
    dataset: Any,
    split: str,
    header: Any,
    samples: Any,
    save_pred: Path | None,
    limit: int | None,
) -> Any:
    """Load the checkpoint (or ONNX file), check it fits the dataset, and score it with the options given."""
    from refine_cli.engine.eval.evaluator import check_classes_match, evaluate

    config, preset = run.config(), run.preset()
    loaded = run.load(checkpoint)
    config = run.for_model(config, loaded)
    check_classes_match(loaded.num_classes, dataset.meta, f"checkpoint {checkpoint}")
    if list(loaded.classes) != list(dataset.meta.classes):
        warn(f"class names of {checkpoint} differ from {dataset.meta.name}'s; scores use the dataset's order")
    header.print(
        f"Evaluating {checkpoint} ({loaded.model}) on {dataset.path} split {split}\n"
        f"{describe_settings(config, preset)} | device {loaded.describe_device()}, "
        f"{loaded.backend.precision}"
    )
    report = evaluate(
        loaded.backend, dataset, split, config, save_pred_dir=save_pred, progress=err.is_terminal, limit=limit,
        settings={"checkpoint": str(checkpoint), "model": loaded.model}, on_sample=samples, notify=warn,
        protocol=preset,
    )  # fmt: skip
    if save_pred is not None:
        err.print(f"wrote {report.num_images} predictions to {save_pred}")
    return report


def _refuse_model_options(given: dict[str, bool]) -> None:
    """--pred only scores saved label PNGs: every option that sets how a model runs is refused by name."""
    from refine_cli.errors import RefineError

    named = [name for name, used in given.items() if used]
    if named:
        raise RefineError(
            f"{', '.join(named)} {'needs' if len(named) == 1 else 'need'} --checkpoint, not --pred: "
            "they set how a model runs, and --pred only scores saved label PNGs",
            hint="drop " + ", ".join(named),
        )


def _report_collector(report_dir: Path | None, dataset, inputs: dict[str, Any]) -> Any:  # noqa: ANN001
    """The per-image callback for --report (None without it); the folder is checked before any work."""
    if report_dir is None:
        return None
    from refine_cli.engine.eval.per_image import PerImageScores

    check_picture_folder(report_dir, "--report", inputs)
    return PerImageScores(dataset.meta.num_classes, dataset.meta.ignore_index)


def _finish(report, json_out: str | None, report_dir: Path | None, samples, dataset) -> None:  # noqa: ANN001
    if report_dir is not None:
        import time

        from refine_cli.engine.eval.report import write_eval_report

        start = time.perf_counter()
        page = write_eval_report(report_dir, report, samples, dataset)
        err.print(f"wrote {page} ({time.perf_counter() - start:.1f} s)")
    if json_out is not None:
        emit_json(report.to_json(), json_out)
        if json_out == "-":
            return
    render_report(report)


def render_report(report) -> None:  # noqa: ANN001 - an EvalReport
    """Per-class table, then the summary line (percentages; JSON keeps fractions)."""
    from rich.table import Table
    from rich.text import Text

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}"

    scores = report.scores
    table = Table(title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    table.add_column("acc %", justify="right")
    for index, row in enumerate(scores.per_class(report.class_names)):
        table.add_row(str(index), row["name"], pct(row["iou"]), pct(row["acc"]))
    out.print(table)
    summary = scores.summary()
    out.print(
        Text.assemble(
            (f"mIoU {pct(summary['miou'])}", "bold"),
            f" | pixel acc {pct(summary['pixel_acc'])} | mean acc {pct(summary['mean_acc'])} | "
            f"FWIoU {pct(summary['fwiou'])} | {report.num_images} images, {summary['num_pixels']:,} pixels, "
            f"{report.seconds:.1f} s",
        )
    )
    if scores.skipped:
        names = ", ".join(report.class_names[i] for i in scores.skipped)
        out.print(f"{len(scores.skipped)} class(es) absent from labels and predictions, skipped in the means: {names}")


def register(app: typer.Typer) -> None:
    """Attach `refine eval`."""
    app.command("eval", epilog=_EXAMPLES)(inference_command(eval_command))
