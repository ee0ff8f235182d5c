"""`refine predict`: label PNGs (palette), overlays and probabilities for image files, folders and globs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from refine_cli.cli._console import emit_json, err, out, warn
from refine_cli.cli._inference_opts import (
    BatchOpt,
    CheckpointHelp,
    CompileOpt,
    CrfOpt,
    CrfParamOpt,
    DeviceOpt,
    FlipOpt,
    MscOpt,
    PrecisionOpt,
    TileOpt,
    WorkersOpt,
    describe_settings,
    resolve_crf,
    resolve_precision,
    resolve_tta,
    warn_if_slow_precision,
)
from refine_cli.cli._options import JsonOpt

_EXAMPLES = """
Examples:

  refine predict photos/ --checkpoint best.pt --out preds --overlay
  refine predict 'shots/**/*.jpg' --checkpoint best.pt --out preds --msc --flip --crf
"""
_MAX_LISTED_FAILURES = 10


def predict_command(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (their images) or glob patterns.")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help=CheckpointHelp)],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing).")],
    msc: MscOpt = None,
    flip: FlipOpt = False,
    tile: TileOpt = None,
    crf: CrfOpt = False,
    crf_param: CrfParamOpt = None,
    overlay: Annotated[
        bool, typer.Option("--overlay", help="Also write <stem>_overlay.jpg (labels over image).")
    ] = False,
    probs: Annotated[
        bool, typer.Option("--probs", help="Also write <stem>_probs.npz: float16 class probabilities (C,H,W).")
    ] = False,
    label_ids: Annotated[
        bool,
        typer.Option(
            "--label-ids",
            help="Write <stem>.png as the dataset's source ids (Cityscapes labelIds, grayscale) for benchmark "
            "servers, instead of class indices; the map comes from the checkpoint or --label-map.",
        ),
    ] = False,
    label_map: Annotated[
        Optional[Path],  # noqa: UP045 - typer evaluates this at runtime
        typer.Option("--label-map", help="Unified dataset whose meta.json holds the id map (with --label-ids)."),
    ] = None,
    batch: BatchOpt = 1,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = None,
    compile_model: CompileOpt = False,
    precision: PrecisionOpt = None,
    json_out: JsonOpt = None,
) -> None:
    """Predict a label map for every image: <stem>.png with the checkpoint's palette, plus optional extras."""
    from refine_cli.engine.predictor import expand_inputs, label_id_map_of, predict_images
    from refine_cli.engine.runner import load_model
    from refine_cli.errors import RefineError
    from refine_cli.guards import refuse_output_over_inputs

    scales, tile_size = resolve_tta(msc, tile)
    crf_params = resolve_crf(crf, crf_param)
    paths, problems = expand_inputs(inputs)
    if not paths:
        reasons = "; ".join(f"{name}: {why}" for name, why in problems[:3])
        raise RefineError(f"no input images found ({reasons})", hint="give image files, folders or quoted globs")
    if label_map is not None and not label_ids:
        raise RefineError("--label-map is only used with --label-ids", hint="add --label-ids or drop --label-map")
    suffixes = [".png"] + ["_overlay.jpg"] * overlay + ["_probs.npz"] * probs  # what predict_images writes
    refuse_output_over_inputs(
        {"--out": [out_dir / f"{path.stem}{suffix}" for path in paths for suffix in suffixes], "--json": json_out},
        {"input image": paths, "--checkpoint": checkpoint, "--label-map": label_map},
    )
    loaded = load_model(checkpoint, device, compile_model, resolve_precision(precision))
    warn_if_slow_precision(loaded.backend.precision, loaded.backend.device)
    id_map = label_id_map_of(loaded, label_map) if label_ids else None
    err.print(
        f"Predicting {len(paths)} image(s) with {checkpoint} ({loaded.model}) on {loaded.describe_device()}, "
        f"{loaded.backend.precision}: "
        f"{describe_settings(scales, flip, tile_size, crf_params)}"
    )
    summary = predict_images(
        loaded.backend,
        paths,
        out_dir,
        palette=loaded.palette,
        classes=loaded.classes,
        scales=scales,
        flip=flip,
        tile=tile_size,
        crf=crf_params,
        save_overlay=overlay,
        save_probs=probs,
        batch_size=batch,
        workers=workers,
        progress=err.is_terminal,
        label_id_map=id_map,
    )
    summary.failed[:0] = problems
    for name, why in summary.failed[:_MAX_LISTED_FAILURES]:
        warn(f"skipped {name}: {why}")
    if len(summary.failed) > _MAX_LISTED_FAILURES:
        warn(f"... and {len(summary.failed) - _MAX_LISTED_FAILURES} more skipped input(s)")
    if json_out is not None:
        emit_json(
            {
                **summary.to_json(),
                "checkpoint": str(checkpoint),
                "runtime": loaded.runtime,
                "precision": loaded.backend.precision,
                "scales": list(scales),
                "flip": flip,
            },
            json_out,
        )
    if not summary.processed:
        raise RefineError(
            f"none of the {len(paths) + len(problems)} input(s) could be processed", hint="see the warnings above"
        )
    if json_out != "-":
        rate = len(summary.processed) / summary.seconds if summary.seconds > 0 else float("inf")
        out.print(
            f"wrote {len(summary.processed)} prediction(s) to {out_dir} ({rate:.1f} img/s)"
            + (f"; skipped {len(summary.failed)} input(s)" if summary.failed else "")
        )


def register(app: typer.Typer) -> None:
    """Attach `refine predict`."""
    app.command("predict", epilog=_EXAMPLES)(predict_command)
