"""One place for terminal output: reports on stdout, progress and messages on stderr, JSON on demand.

Text is printed as text: the consoles parse no Rich markup, so a path or class name like `a[/red]b`
prints as typed, and control characters (terminal escape sequences, NUL, carriage returns) in
anything printed are shown as `\\xNN` instead of driving the terminal. Styled words (`error:`,
`warning:`) are built as Rich `Text` with `tagged`, never by formatting markup around user text.

With `--json -` stdout carries the JSON alone (`refine check data/voc --json - | jq ...`): the reports
that would go to stdout are written to stderr for the whole command (`reports_to_stderr`).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.text import Text

from refine_cli.fileio import write_json_atomic

# C0 controls except tab and newline, DEL, and the C1 controls (a lone ESC starts every escape sequence)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(value: object) -> str:
    """`value` as text that is safe to print: control characters become visible `\\xNN` escapes."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", str(value))


class SafeConsole(Console):
    """A Rich console without markup whose `print` shows control characters in strings as escapes.

    Its width follows the terminal (or $COLUMNS) when it prints, not when refine was imported.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kwargs.get("width") is None:
            self._width = None  # Rich fixes $COLUMNS at construction; reading it per print follows the terminal

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        safe = tuple(plain(item) if isinstance(item, str) else _plain_text(item) for item in objects)
        super().print(*safe, **kwargs)


def _plain_text(item: Any) -> Any:
    if isinstance(item, Text) and _CONTROL.search(item.plain):
        return Text(plain(item.plain), style=item.style)  # rare enough that losing inner styles is fine
    return item


out = SafeConsole(highlight=False, markup=False)
err = SafeConsole(stderr=True, highlight=False, markup=False)


def tagged(tag: str, style: str, message: object) -> Text:
    """`tag` in `style`, then the message as plain text: 'warning: ...', 'error: ...'."""
    return Text.assemble((tag, style), " ", plain(message))


@contextmanager
def reports_to_stderr(enabled: bool = True) -> Iterator[None]:
    """While active (and `enabled`), everything printed through `out` goes to stderr instead of stdout."""
    if not enabled:
        yield
        return
    saved, out.stderr = out.stderr, True
    try:
        yield
    finally:
        out.stderr = saved


def emit_json(obj: Any, dest: str) -> None:
    """Write `obj` as JSON to stdout when `dest` is '-', otherwise atomically to the file `dest`."""
    if dest == "-":
        sys.stdout.write(json.dumps(obj, indent=2) + "\n")
        sys.stdout.flush()
    else:
        write_json_atomic(dest, obj)
        err.print(f"wrote {dest}")


def warn(message: str) -> None:
    """A warning the user should see but that does not stop the command."""
    err.print(tagged("warning:", "yellow", message))
