"""`refine predict` on videos, cameras and streams: input sorting, the checks before any work, the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape

from refine_cli.cli._console import emit_json, err, out, warn


def split_videos(inputs: list[str], camera: int | None) -> tuple[list[str], list[Any]]:
    """(image inputs, VideoSources): video files by suffix (named, in folders or matched by a glob), stream
    URLs, and `--camera N`; folders and globs keep their images for the image path."""
    import glob
    import os

    from refine_cli.data.format.imageio import IMAGE_SUFFIXES
    from refine_cli.engine.infer.video import VideoSource, is_stream, is_video_file
    from refine_cli.errors import RefineError

    if not inputs and camera is None:
        raise RefineError("nothing to predict", hint="give image files, folders, quoted globs, videos or --camera N")

    images, videos = [], []
    for text in inputs:
        path = Path(text).expanduser()
        if is_stream(text):
            videos.append(VideoSource.of(text))
        elif path.is_dir() or (not path.exists() and set("*?[") & set(text)):
            found = sorted(path.iterdir() if path.is_dir() else map(Path, glob.glob(os.path.expanduser(text))))
            matched = [p for p in found if p.is_file() and is_video_file(p)]
            videos += [VideoSource.of(str(p)) for p in matched]
            pictures = [str(p) for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
            if not matched:
                images.append(text)  # images only, or nothing (reported as such on the image path)
            elif path.is_dir():
                images += [text] if pictures else []  # the image path takes a folder's images, not its videos
            else:
                images += pictures  # named, so the pattern's videos are not read as images
        elif is_video_file(path):
            videos.append(VideoSource.of(str(path)))
        else:
            images.append(text)
    if camera is not None:
        videos.append(VideoSource.of(camera))
    return images, videos


def checked_videos(
    videos: list[Any], out_dir: Path, codec: str, frames: bool, checkpoint: Path, json_out: str | None
) -> None:
    """Before any work: every video file decodes, the codec can encode, and no output lands on an input."""
    if not videos:
        return
    import tempfile

    from refine_cli.engine.infer.video import check_decodes, open_capture, open_writer, output_path
    from refine_cli.errors import RefineError
    from refine_cli.guards import refuse_output_over_inputs

    names = [video.name for video in videos]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise RefineError(
            f"two videos would both be written as {repeated[0]}_overlay",
            hint="predict them into separate --out folders",
        )
    files = [Path(video.source) for video in videos if not video.live]
    outputs = [output_path(out_dir, video.name, codec) for video in videos]
    outputs += [out_dir / f"{video.name}_frames" for video in videos if frames]
    refuse_output_over_inputs({"--out": outputs, "--json": json_out}, {"--checkpoint": checkpoint, "video": files})
    for video in videos:
        if video.live:
            open_capture(video).release()  # a missing camera or a dead URL is said before the model loads
        else:
            check_decodes(video)
    with tempfile.TemporaryDirectory(prefix="refine-codec-") as folder:  # a missing encoder is found now, not later
        probe = Path(folder) / f"probe{output_path(Path(folder), 'x', codec).suffix}"
        open_writer(probe, codec, 25.0, 64, 64).release()


def predict_videos(
    loaded: Any,
    videos: list[Any],
    out_dir: Path,
    how: tuple[Any, str | None],
    style: tuple[str, bool, float, Any],
    report: dict[str, Any],
    json_out: str | None,
) -> None:
    """Predict each video in turn; one line per video (frames, size, fps, frames/s), then the JSON report.

    `how` is (the InferenceConfig, the --msc preset it came from); `style` is (codec, label PNGs per frame or
    not, overlay alpha, the --label-ids map or None)."""
    from refine_cli.cli._inference_opts import describe_settings
    from refine_cli.engine.infer.video import VideoOptions, predict_video

    config, preset = how
    codec, frames, alpha, id_map = style
    options = VideoOptions(
        config=config,
        codec=codec,
        save_frames=frames,
        progress=err.is_terminal,
        notify=warn,
        alpha=alpha,
        label_id_map=id_map,
    )
    summaries = []
    for video in videos:
        err.print(
            f"Predicting video {escape(str(video.source))} with {escape(str(loaded.path))} ({loaded.model}) on "
            f"{loaded.describe_device()}, {loaded.backend.precision}: "
            f"{describe_settings(config, preset)}"
        )
        summary = predict_video(loaded.backend, video, out_dir, loaded.palette, loaded.classes, options)
        summaries.append(summary)
        for note in summary.notes:
            warn(note)
        if json_out != "-":
            where = "shown in a window" if summary.shown else f"wrote {escape(str(summary.output))}"
            stopped = " (stopped by the user)" if summary.interrupted else ""
            out.print(
                f"{where}: {summary.frames} frame(s) of {summary.width}x{summary.height} at {summary.fps:g} fps"
                f"{stopped}; {summary.frames_per_second:.1f} frames/s"
                + (f"; label PNGs in {escape(str(summary.label_dir))}" if summary.label_dir else "")
            )
    if json_out is not None:
        emit_json({**report, "out_dir": str(out_dir), "videos": [s.to_json() for s in summaries]}, json_out)
