"""The two threads around the inference loop of `refine predict` on video: decoding ahead, encoding behind.

The reader decodes frames into a bounded queue (a live source drops its oldest frame rather than fall
behind); the writer blends each predicted frame over its image, encodes it and writes its label PNG, and
checks the free space every few frames. Errors of either thread are raised on the inference thread.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.format.palette import overlay
from refine_cli.engine.infer.predictor import PredictionWriter
from refine_cli.fileio import ensure_free_space

QUEUE_DEPTH = 8
FREE_SPACE_EVERY = 100  # frames between free-space checks of the output folder
DONE = object()  # the end of a queue


# FFmpeg's own log lines ("moov atom not found") would precede refine's one-line error
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def opencv() -> Any:
    """cv2, imported on first use: after the FFmpeg log level above is set."""
    import cv2

    return cv2


class FrameReader(threading.Thread):
    """Decodes frames into a bounded queue; a live source drops its oldest frame instead of waiting."""

    def __init__(self, capture: Any, live: bool) -> None:
        super().__init__(daemon=True, name="refine-video-reader")
        self.capture, self.live = capture, live
        self.frames: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self.stop = threading.Event()
        self.dropped = 0

    def run(self) -> None:
        cv2 = opencv()
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
            self._put(DONE, final=True)

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
            if item is DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class FrameWriter(threading.Thread):
    """Blends, encodes and writes each predicted frame (and its label PNG) off the inference thread."""

    def __init__(
        self, video: Any, labels: PredictionWriter | None, style: tuple[np.ndarray, float], check_space: Path | None
    ) -> None:
        super().__init__(daemon=True, name="refine-video-writer")
        self.video, self.labels, self.check_space = video, labels, check_space
        self.table, self.alpha = style
        self.items: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self.error: BaseException | None = None
        self.written = 0

    def run(self) -> None:
        cv2 = opencv()
        while (item := self.items.get()) is not DONE:
            if self.error is not None:
                continue  # drain, so the producer never blocks on a dead writer
            index, image, label = item
            try:
                if self.video is not None:
                    self.video.write(cv2.cvtColor(overlay(image, label, self.table, self.alpha), cv2.COLOR_RGB2BGR))
                if self.labels is not None:
                    self.labels.write(f"{index:06d}", image, label, None)
                self.written += 1
                if self.check_space is not None and self.written % FREE_SPACE_EVERY == 0:
                    ensure_free_space(self.check_space, 64 * 2**20, "the overlay video")
            except BaseException as error:  # noqa: BLE001 - raised on the inference thread
                self.error = error

    def put(self, item: Any) -> None:
        if self.error is not None:
            raise self.error
        self.items.put(item)
