"""Option types shared by several commands, so every command spells them the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Optional

import typer

# Options whose value may be left out: `--json` alone means `--json -` (stdout). Typer has no
# optional-value options, so the root command fills the value in before parsing (see app.py).
OPTIONAL_VALUE_DEFAULTS: dict[str, str] = {"--json": "-"}

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
            if following is None or (following.startswith("-") and following != "-"):
                filled.append(OPTIONAL_VALUE_DEFAULTS[arg])
    return filled
