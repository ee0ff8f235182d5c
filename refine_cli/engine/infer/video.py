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
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.format.imageio import MAX_PIXELS_ENV, max_pixels
from refine_cli.data.format.palette import overlay, palette_array
from refine_cli.engine.infer.loop import Backend, InferenceConfig, run_inference
from refine_cli.engine.infer.predictor import PredictionWriter
from refine_cli.errors import RefineError
from refine_cli.fileio import atomic_path, ensure_free_space

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
# FOURCC -> container; anything else goes into Matroska, which takes most codecs
CONTAINERS = {"mp4v": ".mp4", "avc1": ".mp4", "hev1": ".mp4", "mjpg": ".avi", "xvid": ".avi", "vp80": ".webm",
              "vp90": ".webm", "ffv1": ".mkv"}  # fmt: skip
DEFAULT_CODEC = "mp4v"
DEFAULT_FPS = 25.0  # for sources that do not say (some cameras and streams)
_QUEUE_DEPTH = 8
_FREE_SPACE_EVERY = 100  # frames between free-space checks of a live recording
_DONE = object()

# FFmpeg's own log lines ("moov atom not found") would precede refine's one-line error
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


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


def _cv2() -> Any:
    import cv2

    return cv2


def open_capture(source: VideoSource) -> Any:
    """An opened cv2.VideoCapture whose frame size is within the pixel limit; one line if it cannot be read."""
    cv2 = _cv2()
    if isinstance(source.source, str) and not source.live and not Path(source.source).is_file():
        raise RefineError(f"video {source.source} does not exist", hint="check the path")
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
    cv2 = _cv2()
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
    cv2 = _cv2()
    if len(codec) != 4:
        raise RefineError(f"--video-codec {codec!r} is not a FOURCC", hint="use 4 characters, e.g. mp4v or MJPG")
    with _quiet_native_stderr():
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise RefineError(
            f"OpenCV cannot encode {codec} video into {path.suffix} here (its FFmpeg build lacks that encoder)",
            hint="use --video-codec mp4v (MPEG-4 in .mp4) or MJPG (Motion JPEG in .avi)",
        )
    return writer


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """OpenCV prints codec-tag complaints straight to fd 2; they would precede refine's one-line error."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def has_display() -> bool:
    """A window can be shown: OpenCV was built with a GUI and (on Linux) a display is set."""
    build = _cv2().getBuildInformation()
    gui = next((line for line in build.splitlines() if line.strip().startswith("GUI:")), "GUI: NONE")
    if gui.split(":", 1)[1].strip().upper() == "NONE":
        return False
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class _FrameReader(threading.Thread):
    """Decodes frames into a bounded queue; a live source drops its oldest frame instead of waiting."""

    def __init__(self, capture: Any, live: bool) -> None:
        super().__init__(daemon=True, name="refine-video-reader")
        self.capture, self.live = capture, live
        self.frames: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.stop = threading.Event()
        self.dropped = 0

    def run(self) -> None:
        cv2 = _cv2()
        index = 0
        try:
            while not self.stop.is_set():
                ok, frame = self.capture.read()
                if not ok:
                    break
                self._put((index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
                index += 1
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(error)
        finally:
            self._put(_DONE, final=True)

    def _put(self, item: Any, final: bool = False) -> None:
        while not self.stop.is_set() or final:
            if self.live and not final and self.frames.full():
                with contextlib.suppress(queue.Empty):
                    self.frames.get_nowait()
                    self.dropped += 1
            try:
                self.frames.put(item, timeout=0.1)
                return
            except queue.Full:
                if final and self.stop.is_set():
                    with contextlib.suppress(queue.Empty):
                        self.frames.get_nowait()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        while True:
            item = self.frames.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class _FrameWriter(threading.Thread):
    """Blends, encodes and writes each predicted frame (and its label PNG) off the inference thread."""

    def __init__(
        self, video: Any, labels: PredictionWriter | None, style: tuple[np.ndarray, float], check_space: Path | None
    ) -> None:
        super().__init__(daemon=True, name="refine-video-writer")
        self.video, self.labels, self.check_space = video, labels, check_space
        self.table, self.alpha = style
        self.items: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.error: BaseException | None = None
        self.written = 0

    def run(self) -> None:
        cv2 = _cv2()
        while (item := self.items.get()) is not _DONE:
            if self.error is not None:
                continue  # drain, so the producer never blocks on a dead writer
            index, image, label = item
            try:
                if self.video is not None:
                    self.video.write(cv2.cvtColor(overlay(image, label, self.table, self.alpha), cv2.COLOR_RGB2BGR))
                if self.labels is not None:
                    self.labels.write(f"{index:06d}", image, label, None)
                self.written += 1
                if self.check_space is not None and self.written % _FREE_SPACE_EVERY == 0:
                    ensure_free_space(self.check_space, 64 * 2**20, "the live recording")
            except BaseException as error:  # noqa: BLE001 - raised on the inference thread
                self.error = error

    def put(self, item: Any) -> None:
        if self.error is not None:
            raise self.error
        self.items.put(item)


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


def predict_video(
    backend: Backend, source: VideoSource, out_dir: Path, palette: list[list[int]] | None, classes: list[str],
    options: VideoOptions,
) -> VideoSummary:  # fmt: skip
    """Predict every frame of `source` and write `<name>_overlay.<ext>` (and `<name>_frames/NNNNNN.png`)."""
    cv2 = _cv2()
    capture = open_capture(source)
    fps = capture.get(cv2.CAP_PROP_FPS)
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    show = (source.live and has_display()) if options.show is None else options.show
    target = None if show else output_path(out_dir, source.name, options.codec)
    label_dir = out_dir / f"{source.name}_frames" if options.save_frames else None
    summary = VideoSummary(
        str(source.source), str(target) if target else None, str(label_dir) if label_dir else None,
        width=width, height=height, fps=fps if fps and fps > 0 else DEFAULT_FPS, shown=show,
    )  # fmt: skip
    if not (fps and fps > 0):
        summary.notes.append(f"the source gives no frame rate; the video is written at {DEFAULT_FPS:g} fps")
    out_dir.mkdir(parents=True, exist_ok=True)
    if label_dir is not None:
        label_dir.mkdir(parents=True, exist_ok=True)
    labels = PredictionWriter(label_dir, palette, classes) if label_dir is not None else None
    try:
        if target is None:
            _run(backend, capture, None, labels, summary, palette, classes, source, options)
        else:
            with atomic_path(target) as tmp:
                video = open_writer(tmp.with_suffix(target.suffix), options.codec, summary.fps, width, height)
                try:
                    _run(backend, capture, video, labels, summary, palette, classes, source, options)
                finally:
                    video.release()
                    if tmp.with_suffix(target.suffix).exists():
                        os.replace(tmp.with_suffix(target.suffix), tmp)
    finally:
        capture.release()
    return summary


def _run(
    backend: Backend, capture: Any, video: Any, labels: PredictionWriter | None, summary: VideoSummary,
    palette: list[list[int]] | None, classes: list[str], source: VideoSource, options: VideoOptions,
) -> None:  # fmt: skip
    """Reader -> inference loop -> writer (or window) until the source ends or the user stops a live one."""
    from tqdm import tqdm

    cv2 = _cv2()
    table = palette_array(palette, len(classes))
    total = None if source.live else int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    reader = _FrameReader(capture, source.live)
    writer = _FrameWriter(
        video, labels, (table, options.alpha), Path(summary.output).parent if source.live and video else None
    )
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
            writer.put((prediction.key, prediction.image, label))
            summary.frames += 1
            bar.update(1)
    except KeyboardInterrupt:
        summary.interrupted = True
        if not source.live:
            raise  # a half-made video of a file is not kept (atomic_path removes it)
    finally:
        reader.stop.set()
        writer.items.put(_DONE)
        writer.join()
        reader.join(timeout=5)
        bar.close()
        if summary.shown:
            with contextlib.suppress(Exception):
                cv2.destroyAllWindows()
    summary.seconds = time.perf_counter() - start
    if writer.error is not None:
        raise writer.error
    if reader.dropped:
        summary.notes.append(f"{reader.dropped} live frame(s) dropped while inference caught up")
    if summary.frames == 0:
        raise RefineError(f"{summary.input} gave no frames", hint="the video is empty or cannot be decoded")


def _show(cv2: Any, rgb: np.ndarray, title: str) -> bool:
    """Show one overlay frame; True when the user closed the stream (q or Esc)."""
    cv2.imshow(f"refine: {title}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return (cv2.waitKey(1) & 0xFF) in (ord("q"), 27)
