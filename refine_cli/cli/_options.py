"""Option types shared by several commands, so every command spells them the same way."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from refine_cli.errors import RefineError

# Options whose value may be left out: `--json` alone means `--json -` (stdout). Typer has no
# optional-value options, so the root command fills the value in before parsing (see app.py).
OPTIONAL_VALUE_DEFAULTS: dict[str, str] = {"--json": "-"}
# Where a value has a known shape (e.g. `--msc 0.5,1`), a following word of another shape is not taken
# as the value: `refine predict --msc photo.jpg` means the default scales and the input photo.jpg.
OPTIONAL_VALUE_PATTERNS: dict[str, re.Pattern[str]] = {}
# ... but a bare word that is neither such a value nor a path (`--msc abc`) is a mistyped value,
# refused with this description of the expected value.
OPTIONAL_VALUE_EXAMPLES: dict[str, str] = {}

JsonOpt = Annotated[
    Optional[str],  # noqa: UP045 - typer evaluates this at runtime
    typer.Option(
        "--json",
        metavar="[PATH|-]",
        help="Also write the report as JSON: to PATH, or to stdout with '-' or no value.",
    ),
]


def _looks_like_path(word: str) -> bool:
    """A file, folder or glob the user means as an input: it exists, or has a suffix, a separator or a wildcard."""
    return any(mark in word for mark in "./\\*?[") or os.path.exists(word)


def fill_optional_values(args: Sequence[str]) -> list[str]:
    """Insert the default value after an optional-value option that was given without one.

    RefineError when the following word has neither the option's value shape nor a path's
    (`--msc abc`): silently taking it as an input would hide the typo.
    """
    filled: list[str] = []
    for index, arg in enumerate(args):
        filled.append(arg)
        if arg not in OPTIONAL_VALUE_DEFAULTS:
            continue
        following = args[index + 1] if index + 1 < len(args) else None
        pattern = OPTIONAL_VALUE_PATTERNS.get(arg)
        if following is None or (following.startswith("-") and following != "-"):
            filled.append(OPTIONAL_VALUE_DEFAULTS[arg])
        elif pattern is not None and not pattern.fullmatch(following):
            if arg in OPTIONAL_VALUE_EXAMPLES and not _looks_like_path(following):
                raise RefineError(
                    f"{arg} expects {OPTIONAL_VALUE_EXAMPLES[arg]}, not {following!r}",
                    hint=f"for the default {OPTIONAL_VALUE_DEFAULTS[arg]} write {arg}= or put {arg} after the inputs",
                )
            filled.append(OPTIONAL_VALUE_DEFAULTS[arg])
    return filled


def parse_size(text: str, option: str, minimum: int = 32) -> tuple[int, int]:
    """'512' -> (512, 512); '480x640' -> (480, 640) as height x width: the one reader of every size option."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX*]\s*(\d+)\s*)?", str(text))
    if not match:
        raise RefineError(f"bad {option} {text!r}", hint="give one number (512) or HEIGHTxWIDTH (480x640)")
    height = int(match.group(1))
    width = int(match.group(2)) if match.group(2) else height
    if height < minimum or width < minimum:
        raise RefineError(f"{option} {height}x{width} is too small", hint=f"use at least {minimum} pixels per side")
    return height, width


_FILE_SUFFIXES = {".html", ".htm", ".png", ".jpg", ".jpeg", ".svg", ".pdf"}


def check_picture_folder(folder: Path, flag: str, inputs: dict[str, Any]) -> None:
    """Refuse a pictures folder (--report, --gallery) that is, holds or sits in an input, or is not writable.

    Checked before any work. The writability probe creates the folder; a folder that did not exist is
    removed again, so a command that fails later (a wrong checkpoint, a broken dataset) leaves no empty
    folder behind.
    """
    from refine_cli.fileio import check_writable_folder
    from refine_cli.guards import refuse_output_over_inputs

    if folder.exists() and not folder.is_dir():
        raise RefineError(f"{flag} {folder} is a file", hint="give a folder for the pictures")
    if not folder.exists() and folder.suffix.lower() in _FILE_SUFFIXES:  # `--report rep.html`: a folder so named
        bare = folder.with_suffix("")
        page = (" and its report.html", f", then open {bare}/report.html") if flag == "--report" else ("", "")
        raise RefineError(
            f"{flag} {folder} names a file, but {flag} writes a folder of pictures{page[0]}",
            hint=f"give a folder, e.g. {flag} {bare}{page[1]}",
        )
    refuse_output_over_inputs({flag: folder}, inputs)
    created = [path for path in (folder, *folder.absolute().parents) if not path.exists()]  # deepest first
    check_writable_folder(folder)
    for path in created:  # the probe made them all (`--report new/sub/dir`): none is left behind
        path.rmdir()


def with_shared_options(
    fn: Callable, first: str, make: Callable[..., Any], shared: list[inspect.Parameter]
) -> Callable:
    """A Typer command: `fn`'s own parameters, then the `shared` ones (declared once for many commands).

    The command calls `fn(make(**shared values), **own values)`, the first argument named `first`.
    """
    own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != first]
    names = {p.name for p in shared}

    def command(**kwargs: Any) -> Any:
        return fn(make(**{key: kwargs.pop(key) for key in names}), **kwargs)

    command.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in own + shared}
    command.__name__, command.__doc__ = fn.__name__, fn.__doc__
    return command


def parameters_of(spec: Callable) -> list[inspect.Parameter]:
    """The (evaluated) parameters of a function used only to declare options."""
    return list(inspect.signature(spec, eval_str=True).parameters.values())
