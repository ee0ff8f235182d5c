"""One place for terminal output: reports on stdout, progress and messages on stderr, JSON on demand.

With `--json -` stdout carries the JSON alone (`refine check data/voc --json - | jq ...`): the reports
that would go to stdout are written to stderr for the whole command (`reports_to_stderr`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

from refine_cli.fileio import write_json_atomic

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


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
    err.print(f"[yellow]warning:[/yellow] {message}")
