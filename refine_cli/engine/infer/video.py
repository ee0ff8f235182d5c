"""Predict on video: a file in -> an overlay video of the same size, frame rate and frame count; cameras live.

Three stages overlap: a reader thread decodes frames (OpenCV/FFmpeg release the GIL), the caller's
thread runs them through the one inference loop in batches (same-size frames batch like images, big
frames are tiled the same way), and a writer thread blends the overlay, encodes it and writes the
optional per-frame label PNGs (`PredictionWriter`, the predictor's own). Queues between the stages are
bounded, so memory stays a few frames deep whatever the video's length. A file's video is written
under a temporary name and renamed when complete; a live stream (camera, rtsp://) runs until Ctrl-C
(or q / Esc in its window) and what was written until then is kept. Live readers drop the oldest
frame when inference falls behind, so the overlay stays current instead of lagging further and further.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.format.imageio import MAX_PIXELS_ENV, max_pixels
from refine_cli.data.format.palette import overlay, palette_array
from refine_cli.engine.infer.loop import Backend, InferenceConfig, run_inference
from refine_cli.engine.infer.predictor import PredictionWriter
from refine_cli.engine.infer.video_threads import DONE, FrameReader, FrameWriter, opencv
from refine_cli.errors import RefineError, native_stderr_silenced
from refine_cli.fileio import DiskFullError, atomic_path

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
# FOURCC -> container; anything else goes into Matroska, which takes most codecs
CONTAINERS = {"mp4v": ".mp4", "avc1": ".mp4", "hev1": ".mp4", "mjpg": ".avi", "xvid": ".avi", "vp80": ".webm",
              "vp90": ".webm", "ffv1": ".mkv"}  # fmt: skip
DEFAULT_CODEC = "mp4v"
DEFAULT_FPS = 25.0  # for sources that do not say (some cameras and streams)
MAX_FPS = 240.0  # above: a lying header, not a camera


def is_stream(text: str) -> bool:
    """A live network source (rtsp://, http://, ...), read until Ctrl-C."""
    return text.lower().startswith(STREAM_SCHEMES)


def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


@dataclass
class VideoSource:
    """What to open: a file path, a camera index or a stream URL, and the name its outputs get."""

    source: str | int
    name: str
    live: bool

    @classmethod
    def of(cls, value: str | int | Path) -> VideoSource:
        if isinstance(value, int):
            return cls(value, f"camera{value}", True)
        text = str(value)
        if is_stream(text):
            tail = text.split("://", 1)[1].split("?")[0].rstrip("/").rsplit("/", 1)[-1]
            return cls(text, "".join(c if c.isalnum() or c in "-_" else "_" for c in tail) or "stream", True)
        return cls(text, Path(text).stem, False)


@dataclass
class VideoSummary:
    """One video's run: what was read, what was written, how fast."""

    input: str
    output: str | None
    label_dir: str | None
    frames: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    seconds: float = 0.0
    shown: bool = False
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "input": self.input, "output": self.output, "label_dir": self.label_dir, "frames": self.frames,
            "size": [self.width, self.height], "fps": round(self.fps, 3), "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.frames_per_second, 2), "shown": self.shown,
            "interrupted": self.interrupted, "notes": self.notes,
        }  # fmt: skip


def open_capture(source: VideoSource) -> Any:
    """An opened cv2.VideoCapture whose frame size is within the pixel limit; one line if it cannot be read."""
    cv2 = opencv()
    if isinstance(source.source, str) and not source.live and not Path(source.source).is_file():
        raise RefineError(f"video {source.source} does not exist", hint="check the path")
    with native_stderr_silenced():  # FFmpeg's own complaints about a missing camera or a bad file
        capture = cv2.VideoCapture(source.source)
    if not capture.isOpened():
        what = f"camera {source.source}" if isinstance(source.source, int) else f"{source.source}"
        raise RefineError(
            f"{what} cannot be opened as a video by OpenCV/FFmpeg",
            hint="check the camera index or URL" if source.live else "the file is damaged or not a video OpenCV reads",
        )
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    limit = max_pixels()
    if limit and width * height > limit:
        capture.release()
        raise RefineError(
            f"{source.source} claims {width}x{height} frames, over the {limit:,}-pixel limit",
            hint=f"if the video is genuine, raise the limit with `refine --max-pixels N` or {MAX_PIXELS_ENV}=N",
        )
    return capture


def check_decodes(source: VideoSource) -> tuple[int, int, float, int]:
    """(width, height, fps, frame count) of a video file after decoding its first frame; one line if it fails."""
    cv2 = opencv()
    capture = open_capture(source)
    try:
        ok, frame = capture.read()
        if not ok or frame is None:
            raise RefineError(
                f"{source.source} has no decodable video frame",
                hint="the file is damaged, empty, or uses a codec this OpenCV build cannot decode",
            )
        height, width = frame.shape[:2]
        return width, height, capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()


def output_path(out_dir: Path, name: str, codec: str) -> Path:
    """Where a video's overlay goes: <out>/<name>_overlay.<container of the codec>."""
    return out_dir / f"{name}_overlay{CONTAINERS.get(codec.lower(), '.mkv')}"


def open_writer(path: Path, codec: str, fps: float, width: int, height: int) -> Any:
    """A cv2.VideoWriter, or one line when this OpenCV build cannot encode `codec`."""
    cv2 = opencv()
    if len(codec) != 4:
        raise RefineError(f"--video-codec {codec!r} is not a FOURCC", hint="use 4 characters, e.g. mp4v or MJPG")
    with native_stderr_silenced():
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise RefineError(
            f"OpenCV cannot encode {codec} video into {path.suffix} here (its FFmpeg build lacks that encoder)",
            hint="use --video-codec mp4v (MPEG-4 in .mp4) or MJPG (Motion JPEG in .avi)",
        )
    return writer


def has_display() -> bool:
    """A window can be shown: OpenCV was built with a GUI and (on Linux) a display is set."""
    build = opencv().getBuildInformation()
    gui = next((line for line in build.splitlines() if line.strip().startswith("GUI:")), "GUI: NONE")
    if gui.split(":", 1)[1].strip().upper() == "NONE":
        return False
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@dataclass
class VideoOptions:
    """How a video is predicted (`config`, as for images) and what is written besides the overlay video."""

    config: InferenceConfig = field(default_factory=InferenceConfig)
    codec: str = DEFAULT_CODEC
    save_frames: bool = False
    show: bool | None = None  # None: a window for live sources when a display exists
    progress: bool = True
    notify: Callable[[str], None] | None = None
    alpha: float = 0.5  # overlay strength
    label_id_map: Sequence[int] | None = None  # --label-ids for the frame PNGs (see PredictionWriter)


def predict_video(
    backend: Backend, source: VideoSource, out_dir: Path, palette: list[list[int]] | None, classes: list[str],
    options: VideoOptions,
) -> VideoSummary:  # fmt: skip
    """Predict every frame of `source` and write `<name>_overlay.<ext>` (and `<name>_frames/NNNNNN.png`)."""
    cv2 = opencv()
    capture = open_capture(source)
    fps = capture.get(cv2.CAP_PROP_FPS)
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    show = (source.live and has_display()) if options.show is None else options.show
    target = None if show else output_path(out_dir, source.name, options.codec)
    label_dir = out_dir / f"{source.name}_frames" if options.save_frames else None
    summary = VideoSummary(
        str(source.source), str(target) if target else None, str(label_dir) if label_dir else None,
        width=width, height=height, fps=_usable_fps(fps), shown=show,
    )  # fmt: skip
    if summary.fps != fps:
        said = "gives no frame rate" if not fps or fps <= 0 else f"claims {fps:g} fps"
        summary.notes.append(f"the source {said}; the video is written at {DEFAULT_FPS:g} fps")
    created = [folder for folder in (out_dir, label_dir) if folder is not None and not folder.exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    if label_dir is not None:
        label_dir.mkdir(parents=True, exist_ok=True)
    labels = PredictionWriter(label_dir, palette, classes, label_id_map=options.label_id_map) if label_dir else None
    try:
        if target is None:
            _run(backend, capture, None, labels, summary, palette, classes, source, options)
        else:
            with atomic_path(target) as tmp:
                encoded = tmp.with_suffix(target.suffix)  # OpenCV picks the container by the suffix
                video = open_writer(encoded, options.codec, summary.fps, width, height)
                try:
                    _run(backend, capture, video, labels, summary, palette, classes, source, options)
                finally:
                    video.release()
                    if encoded.exists():
                        os.replace(encoded, tmp)
                _check_written(tmp, target, summary)
    except BaseException:
        for folder in reversed(created):  # a failed run leaves no half-filled frames folder behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        capture.release()
    return summary


def _usable_fps(fps: float) -> float:
    """The source's frame rate, or DEFAULT_FPS where it gives none or an absurd one (a lying header)."""
    return fps if fps and math.isfinite(fps) and 0 < fps <= MAX_FPS else DEFAULT_FPS


def _check_written(path: Path, target: Path, summary: VideoSummary) -> None:
    """The encoded file holds every frame: OpenCV's writer reports no error (a full disk, a failed encode)."""
    if target.suffix.lower() not in (".mp4", ".avi"):
        return  # other containers' frame counts are estimates from the duration
    cv2 = opencv()
    with native_stderr_silenced():
        capture = cv2.VideoCapture(str(path))
        written = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        capture.release()
    if written < summary.frames:
        raise RefineError(
            f"the overlay video of {summary.input} came out with {written} of {summary.frames} frame(s); "
            "nothing was kept",
            hint="the disk may be full, or the encoder failed: free some space or try --video-codec MJPG",
        )


def _run(
    backend: Backend, capture: Any, video: Any, labels: PredictionWriter | None, summary: VideoSummary,
    palette: list[list[int]] | None, classes: list[str], source: VideoSource, options: VideoOptions,
) -> None:  # fmt: skip
    """Reader -> inference loop -> writer (or window) until the source ends or the user stops a live one."""
    from tqdm import tqdm

    cv2 = opencv()
    table = palette_array(palette, len(classes))
    total = None if source.live else int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    reader = FrameReader(capture, source.live)
    writer = FrameWriter(video, labels, (table, options.alpha), Path(summary.output).parent if video else None)
    bar = tqdm(
        total=total, desc=f"video {summary.input}"[:40], unit=" frame", disable=not options.progress, leave=False
    )
    start = time.perf_counter()
    reader.start()
    writer.start()
    try:
        for prediction in run_inference(backend, iter(reader), options.config, notify=options.notify):
            label = prediction.label_array()
            if summary.shown and _show(cv2, overlay(prediction.image, label, table, options.alpha), summary.input):
                break
            _check_frame_size(prediction.image, summary, prediction.key)
            try:
                writer.put((prediction.key, prediction.image, label))
            except DiskFullError:
                if not source.live:
                    raise
                break  # a live recording keeps what it has (_finish says why it stopped)
            summary.frames += 1
            bar.update(1)
    except KeyboardInterrupt:
        summary.interrupted = True
        if not source.live:
            raise  # a half-made video of a file is not kept (atomic_path removes it)
    finally:
        reader.stop.set()
        writer.items.put(DONE)
        writer.join()
        reader.join(timeout=5)
        bar.close()
        if summary.shown:
            with contextlib.suppress(Exception):
                cv2.destroyAllWindows()
    summary.seconds = time.perf_counter() - start
    _finish(summary, source, writer.error, reader.dropped, total)


def _check_frame_size(image: np.ndarray, summary: VideoSummary, index: int) -> None:
    """A frame of another size than the header says would be dropped by the encoder without a word."""
    if image.shape[:2] != (summary.height, summary.width):
        raise RefineError(
            f"{summary.input} says its frames are {summary.width}x{summary.height}, but frame {index} decodes as "
            f"{image.shape[1]}x{image.shape[0]}", hint="re-encode the video (e.g. `ffmpeg -i IN OUT.mp4`)",
        )  # fmt: skip


def _finish(
    summary: VideoSummary, source: VideoSource, error: BaseException | None, dropped: int, total: int | None
) -> None:
    """After the last frame: the writer's failure raised (a live recording stopped by a full disk is kept), and
    notes for dropped live frames and for a file that held fewer frames than it claims."""
    if isinstance(error, DiskFullError) and source.live:
        summary.notes.append(f"the recording stopped after {summary.frames} frame(s): {error.one_line()}")
    elif error is not None:
        raise error
    if dropped:
        summary.notes.append(f"{dropped} live frame(s) dropped while inference caught up")
    if summary.frames == 0:
        raise RefineError(f"{summary.input} gave no frames", hint="the video is empty or cannot be decoded")
    if total and summary.frames < total and not summary.interrupted:
        summary.notes.append(
            f"{summary.input} claims {total} frames but only {summary.frames} decode (the rest is cut off or "
            f"damaged): the overlay has {summary.frames}"
        )


def _show(cv2: Any, rgb: np.ndarray, title: str) -> bool:
    """Show one overlay frame; True when the user closed the stream (q or Esc)."""
    cv2.imshow(f"refine: {title}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return (cv2.waitKey(1) & 0xFF) in (ord("q"), 27)
