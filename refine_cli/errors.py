"""Expected failures of refine: each one becomes a single line for the user and exit code 2."""

from __future__ import annotations


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
