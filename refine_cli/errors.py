"""Expected failures of refine: each one becomes a single line for the user and exit code 2."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


class RefineError(Exception):
    """A user-facing error: what is wrong (message) and what to do about it (hint)."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and hint joined on one line, as the CLI prints it."""
        text = " ".join(self.message.split())
        if self.hint:
            text += f" ({' '.join(self.hint.split())})"
        return text


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Native libraries (OpenCV's FFmpeg, OpenVINO's frontends, protobuf) print straight to fd 2: around a
    call whose failure refine reports itself, their lines would precede refine's one-line error."""
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
