"""The `refine` command line: thin Typer commands that parse, call the library and print.

Each subcommand lives in its own module with a `register(app)` function; add new ones to
`_COMMAND_MODULES` below (order = order in `refine --help`).
"""

from __future__ import annotations

import importlib

import typer

_COMMAND_MODULES: list[str] = ["prepare", "check", "models", "convert", "bench", "export", "eval", "predict", "train"]


def register_all(app: typer.Typer) -> None:
    """Attach every subcommand to the root app."""
    for name in _COMMAND_MODULES:
        importlib.import_module(f"refine_cli.cli.{name}").register(app)
