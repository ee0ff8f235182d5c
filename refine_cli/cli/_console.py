"""One place for terminal output: reports on stdout, progress and messages on stderr, JSON on demand.

Text is printed as text: the consoles parse no Rich markup, so a path or class name like `a[/red]b`
prints as typed, and control characters (terminal escape sequences, NUL, carriage returns) in
anything printed are shown as `\\xNN` instead of driving the terminal. Styled words (`error:`,
`warning:`) are built as Rich `Text` with `tagged`, never by formatting markup around user text.
"""

from __future__ import annotations

import json
import re
import sys
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
    """A Rich console without markup whose `print` shows control characters in strings as escapes."""

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
