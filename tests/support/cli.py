"""Running `refine` in-process and reading its one-line refusals (the rule every bad input follows)."""

from __future__ import annotations

from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner


def run_cli(*args: str | Path) -> Result:
    """`refine ARGS` in this process (Typer's runner); paths may be given as Paths."""
    from refine_cli.cli.app import app

    return CliRunner().invoke(app, [str(arg) for arg in args])


def error_line(result: Result, *, alone: bool = False) -> str:
    """The `error: ...` line of a refusal, after checking the rest of the rule: exit 2, no traceback,
    no "internal error", and the error is the last line (a command's header may come before it;
    with `alone`, nothing may: the refusal came before any work).
    """
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:] and "internal error" not in errors[0], result.output
    assert not alone or len(lines) == 1, result.output
    return errors[0]
