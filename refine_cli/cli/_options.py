"""Option types shared by several commands, so every command spells them the same way."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

# Options whose value may be left out: `--json` alone means `--json -` (stdout). Typer has no
# optional-value options, so the root command fills the value in before parsing (see app.py).
OPTIONAL_VALUE_DEFAULTS: dict[str, str] = {"--json": "-"}
# Where a value has a known shape (e.g. `--msc 0.5,1`), a following word of another shape is not taken
# as the value: `refine predict --msc photo.jpg` means the default scales and the input photo.jpg.
OPTIONAL_VALUE_PATTERNS: dict[str, re.Pattern[str]] = {}

JsonOpt = Annotated[
    Optional[str],  # noqa: UP045 - typer evaluates this at runtime
    typer.Option(
        "--json",
        metavar="[PATH|-]",
        help="Also write the report as JSON: to PATH, or to stdout with '-' or no value.",
    ),
]


def fill_optional_values(args: Sequence[str]) -> list[str]:
    """Insert the default value after an optional-value option that was given without one."""
    filled: list[str] = []
    for index, arg in enumerate(args):
        filled.append(arg)
        if arg in OPTIONAL_VALUE_DEFAULTS:
            following = args[index + 1] if index + 1 < len(args) else None
            pattern = OPTIONAL_VALUE_PATTERNS.get(arg)
            if (
                following is None
                or (following.startswith("-") and following != "-")
                or (pattern is not None and not pattern.fullmatch(following))
            ):
                filled.append(OPTIONAL_VALUE_DEFAULTS[arg])
    return filled


def check_picture_folder(folder: Path, inputs: list[Any]) -> None:
    """Refuse a pictures folder (--report, --gallery) that is an input or not writable, before any work.

    The writability probe creates the folder; a folder that did not exist is removed again, so a
    command that fails later (a wrong checkpoint, a broken dataset) leaves no empty folder behind.
    """
    from refine_cli.engine.run_files import check_writable_folder
    from refine_cli.figures import check_output_folder

    check_output_folder(folder, inputs)
    existed = folder.exists()
    check_writable_folder(folder)
    if not existed:
        folder.rmdir()
