"""`refine predict`: label PNGs (palette), overlays and probabilities for image files, folders and globs;
overlay videos for video files, cameras and streams."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from refine_cli.cli._console import emit_json, err, out, warn
from refine_cli.cli._inference_opts import CheckpointHelp, InferenceOptions, describe_settings, inference_command
from refine_cli.cli._options import JsonOpt

_EXAMPLES = """
Examples:

  refine predict photos/ --checkpoint best.pt --out preds --overlay
  refine predict photos/ --checkpoint best.pt --out preds --overlay --alpha 0.3 --legend
  refine predict 'shots/**/*.jpg' --checkpoint best.pt --out preds --msc --flip --crf
  refine predict clip.mp4 --checkpoint best-int8.onnx --runtime openvino --out preds --frames
  refine predict --camera 0 --checkpoint best.onnx --out preds      (Ctrl-C stops; q too in a window)
"""
_MAX_LISTED_FAILURES = 10


OverlayOpt = Annotated[
    bool,
    typer.Option("--overlay", help="Also write <stem>_overlay.jpg: the labels over the image, each region outlined."),
]
AlphaOpt = Annotated[
    Optional[float],  # noqa: UP045 - typer evaluates this at runtime
    typer.Option("--alpha", min=0.0, max=1.0, help="Opacity of the labels in the overlay (0: outlines only).",
                 show_default="0.5"),
]  # fmt: skip
LegendOpt = Annotated[bool, typer.Option("--legend", help="Draw a legend of the classes present below each overlay.")]
ProbsOpt = Annotated[
    bool, typer.Option("--probs", help="Also write <stem>_probs.npz: float16 class probabilities (C,H,W).")
]
LabelIdsOpt = Annotated[
    bool,
    typer.Option(
        "--label-ids",
        help="Write <stem>.png as the dataset's source ids (Cityscapes labelIds, grayscale) for benchmark "
        "servers, instead of class indices; the map comes from the checkpoint or --label-map.",
    ),
]
CameraOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--camera", min=0, help="Predict live from camera N until Ctrl-C (a window if a display exists)."),
]
FramesOpt = Annotated[
    bool, typer.Option("--frames", help="Videos: also write every frame's label PNG to <name>_frames/NNNNNN.png.")
]
VideoCodecOpt = Annotated[
    str, typer.Option("--video-codec", help="Overlay video codec (a FOURCC): mp4v (.mp4), MJPG (.avi), ...")
]
LabelMapOpt = Annotated[
    Optional[Path],  # noqa: UP045 - typer evaluates this at runtime
    typer.Option("--label-map", help="Unified dataset whose meta.json holds the id map (with --label-ids)."),
]


def predict_command(
    run: InferenceOptions,
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help=CheckpointHelp)],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing).")],
    inputs: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(help="Image files, folders (their images), glob patterns, video files or rtsp:// URLs."),
    ] = None,
    overlay: OverlayOpt = False,
    alpha: AlphaOpt = None,
    legend: LegendOpt = False,
    probs: ProbsOpt = False,
    label_ids: LabelIdsOpt = False,
    label_map: LabelMapOpt = None,
    camera: CameraOpt = None,
    frames: FramesOpt = False,
    video_codec: VideoCodecOpt = "mp4v",
    json_out: JsonOpt = None,
) -> None:
    """Predict a label map for every image (<stem>.png with the checkpoint's palette, plus optional extras) and
    an overlay video for every video, camera or stream."""
    from refine_cli.cli._predict_video import checked_videos, predict_videos, split_videos
    from refine_cli.engine.infer.predictor import label_id_map_of, predict_images

    config, preset = run.config(), run.preset()
    image_inputs, videos = split_videos(inputs or [], camera)
    _check_outputs_asked(alpha, legend, overlay, probs, (bool(image_inputs), bool(videos)))
    paths, problems = (
        _checked_inputs(image_inputs, out_dir, checkpoint, label_ids, label_map, overlay, probs, json_out)
        if image_inputs or not videos
        else ([], [])
    )
    checked_videos(videos, out_dir, video_codec, frames, checkpoint, json_out)
    loaded = run.load(checkpoint)
    config = run.for_model(config, loaded)
    id_map = label_id_map_of(loaded, label_map) if label_ids else None
    settings = {"checkpoint": str(checkpoint), "runtime": loaded.runtime, "precision": loaded.backend.precision,
                "scales": list(config.scales), "flip": config.flip, "upsample": config.upsample,
                "short_side": list(config.short_side) if config.short_side else None, "protocol": preset}  # fmt: skip
    video_style = (video_codec, frames, 0.5 if alpha is None else alpha, id_map)
    if not paths:
        predict_videos(loaded, videos, out_dir, (config, preset), video_style, settings, json_out)
        return
    err.print(
        f"Predicting {len(paths)} image(s) with {checkpoint} ({loaded.model}) on {loaded.describe_device()}, "
        f"{loaded.backend.precision}: {describe_settings(config, preset)}"
    )
    summary = predict_images(
        loaded.backend, paths, out_dir, config, palette=loaded.palette, classes=loaded.classes,
        save_overlay=overlay, save_probs=probs, progress=err.is_terminal, label_id_map=id_map, notify=warn,
        overlay_style=(0.5 if alpha is None else alpha, legend),
    )  # fmt: skip
    summary.failed[:0] = problems
    if videos:
        _report(summary, len(paths) + len(problems), out_dir, settings, None)
        predict_videos(loaded, videos, out_dir, (config, preset), video_style, {**settings, **summary.to_json()},
                       json_out)  # fmt: skip
        return
    _report(summary, len(paths) + len(problems), out_dir, settings, json_out)


def _check_outputs_asked(
    alpha: float | None, legend: bool, overlay: bool, probs: bool, inputs: tuple[bool, bool]
) -> None:
    """--alpha styles image overlays (with --overlay) and overlay videos; --legend only image overlays, since a
    video keeps its frame size; --probs is written for images only. `inputs`: (any images, any videos)."""
    from refine_cli.errors import RefineError

    images, videos = inputs
    if probs and videos and not images:
        raise RefineError(
            "--probs writes <stem>_probs.npz per image; a video gets its overlay and, with --frames, label PNGs",
            hint="drop --probs",
        )
    if legend and videos:
        raise RefineError(
            "--legend draws below image overlays; an overlay video keeps the frame size", hint="drop --legend"
        )
    if ((alpha is not None and not videos) or legend) and not overlay:
        given = [flag for flag, used in (("--alpha", alpha is not None), ("--legend", legend)) if used]
        verb = "style" if len(given) > 1 else "styles"
        raise RefineError(f"{' and '.join(given)} {verb} the overlay, drawn only with --overlay", hint="add --overlay")


def _checked_inputs(
    inputs: list[str],
    out_dir: Path,
    checkpoint: Path,
    label_ids: bool,
    label_map: Path | None,
    overlay: bool,
    probs: bool,
    json_out: str | None,
) -> tuple[list[Path], list[tuple[str, str]]]:
    """The images to predict and the inputs refused on the way; every output is checked against every input."""
    from refine_cli.engine.infer.predictor import expand_inputs
    from refine_cli.errors import RefineError
    from refine_cli.guards import refuse_output_over_inputs

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
    # a folder given as input is read whole: outputs in it (or below it) would be inputs of the next run
    folders = [Path(text).expanduser() for text in inputs if Path(text).expanduser().is_dir()]
    refuse_output_over_inputs({"--out": out_dir}, {"input folder": folders})
    return paths, problems


def _report(summary, inputs: int, out_dir: Path, settings: dict, json_out: str | None) -> None:  # noqa: ANN001
    """Skipped inputs as warnings, the JSON report, and the closing line (or the refusal when nothing was written)."""
    from refine_cli.errors import RefineError

    for name, why in summary.failed[:_MAX_LISTED_FAILURES]:
        warn(f"skipped {name}: {why}")
    if len(summary.failed) > _MAX_LISTED_FAILURES:
        warn(f"... and {len(summary.failed) - _MAX_LISTED_FAILURES} more skipped input(s)")
    for name, why in summary.missing_outputs[:_MAX_LISTED_FAILURES]:
        warn(f"not written: {name}: {why}")
    if json_out is not None:
        emit_json({**summary.to_json(), **settings}, json_out)
    if not summary.processed:
        raise RefineError(f"none of the {inputs} input(s) could be processed", hint="see the warnings above")
    if json_out != "-":
        rate = len(summary.processed) / summary.seconds if summary.seconds > 0 else float("inf")
        out.print(
            f"wrote {len(summary.processed)} prediction(s) to {out_dir} ({rate:.1f} img/s)"
            + (f"; skipped {len(summary.failed)} input(s)" if summary.failed else "")
        )


def register(app: typer.Typer) -> None:
    """Attach `refine predict`."""
    app.command("predict", epilog=_EXAMPLES)(inference_command(predict_command))
