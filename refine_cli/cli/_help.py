"""`--help` for every refine command: readable at 80 columns, in a terminal or a pipe.

Typer's own help cuts option names in narrow terminals (`--pretrained-bac…`), wraps examples into
column 0 and shows Python annotations as types (`<int range>`, `{path}`). Click's documented extension
points replace it here for every command at once: `RefineCommand`/`RefineGroup.format_help` write the
page into click's formatter, `collect_usage_pieces` spells the usage line. Nothing of Typer is patched.

What a page shows, and where it comes from (click attributes and the command's own signature only):

    Usage: refine predict [OPTIONS] INPUTS...       arguments as click spells them (NAME, [NAME], NAME...)
    -c, --checkpoint PATH  ...  [required]          types as click users know them: TEXT, INTEGER, FLOAT,
    --workers INTEGER RANGE  ...  [default: 2; x>=0] PATH, [a|b|c]; a range's bound once, with the default
    --pretrained-backbone / --no-pretrained-backbone   a name too long for the column gets its own line
        ImageNet backbone weights.                    and its help starts below it, never cut
    Examples:
      refine train --recipe lw-voc --data data/voc     preformatted lines keep their indentation; a long
          --pretrained-backbone --out runs/voc         one wraps at a space with a deeper indent
"""

from __future__ import annotations

import inspect
import io
import re
import shutil
import sys
import textwrap
import types
import typing
from collections.abc import Iterable
from enum import Enum
from pathlib import PurePath
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

MAX_WIDTH = 120  # wider pages only make long help lines harder to read
_NAME_COLUMN_MAX = 30  # click's col_max: a longer option name gets a line of its own
_CONTINUATION = "    "  # extra indent of a wrapped preformatted line (an example command)
_TYPE_NAMES = {int: "INTEGER", float: "FLOAT", str: "TEXT", bool: "BOOLEAN"}
_STYLE_OPTION, _STYLE_TYPE, _STYLE_EXTRA = "bold cyan", "yellow", "dim"


class RefineCommand(TyperCommand):
    """A Typer command whose --help is refine's page (see the module docstring)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        formatter.write(render_help(self, ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return usage_pieces(self, ctx)


class RefineGroup(TyperGroup):
    """A Typer group (`refine`, `refine prepare`) with refine's help page and usage line."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        formatter.write(render_help(self, ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [*usage_pieces(self, ctx), self.subcommand_metavar]

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            typer.echo(ctx.get_help(), color=ctx.color)  # `refine` alone: the page, as before (exit code 2)
            ctx.exit(2)
        return super().parse_args(ctx, args)


class RefineTyper(typer.Typer):
    """typer.Typer whose commands are RefineCommands (its group class is given as `cls=`, e.g. RefineGroup)."""

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(name, cls=cls or RefineCommand, **kwargs)


# ---------------------------------------------------------------------------------------------------
# What each parameter shows


def usage_pieces(command: Any, ctx: Any) -> list[str]:
    """`[OPTIONS]` and the arguments as click writes them: NAME, [NAME] when optional, NAME... for many."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if param.param_type_name == "argument" and not getattr(param, "hidden", False):
            name = argument_name(param)
            name = name if param.required else f"[{name}]"
            pieces.append(name + ("..." if param.nargs != 1 else ""))
    return pieces


def argument_name(param: Any) -> str:
    return param.metavar or (param.name or "").upper()


def declared_parameters(command: Any) -> dict[str, tuple[Any, Any]]:
    """name -> (annotation, typer ParameterInfo or None) from the command function's signature."""
    callback = getattr(command, "callback", None)
    if callback is None:
        return {}
    try:
        signature = inspect.signature(callback, eval_str=True)
    except (NameError, TypeError, ValueError):  # pragma: no cover - every refine command has a clean signature
        return {}
    found: dict[str, tuple[Any, Any]] = {}
    for name, parameter in signature.parameters.items():
        annotation, info = parameter.annotation, None
        if typing.get_origin(annotation) is typing.Annotated:
            annotation, *extras = typing.get_args(annotation)
            info = next((extra for extra in extras if isinstance(extra, typer.models.ParameterInfo)), None)
        if info is None and isinstance(parameter.default, typer.models.ParameterInfo):
            info = parameter.default
        found[name] = (annotation, info)
    return found


def _value_type(annotation: Any) -> Any:
    """The type of one value: Optional[X], list[X] and X | None all give X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            annotation = args[0] if len(args) == 1 else str
        elif origin in (list, tuple, set, frozenset) or (origin is not None and origin is not typing.Literal):
            args = typing.get_args(annotation)
            annotation = args[0] if args else str
        else:
            return annotation


def type_label(param: Any, annotation: Any, info: Any) -> str | None:
    """What the value of `param` looks like: TEXT, INTEGER RANGE, PATH, [a|b|c] or its metavar; None for flags."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    if param.metavar:
        alternatives = "|" in param.metavar and not param.metavar.startswith("[")
        return f"[{param.metavar}]" if alternatives else param.metavar
    kind = _value_type(annotation)
    if typing.get_origin(kind) is typing.Literal:
        return "[" + "|".join(str(choice) for choice in typing.get_args(kind)) + "]"
    if isinstance(kind, type) and issubclass(kind, Enum):
        return "[" + "|".join(str(member.value) for member in kind) + "]"
    if isinstance(kind, type) and issubclass(kind, PurePath):
        return "PATH"
    name = _TYPE_NAMES.get(kind, "TEXT")
    if bound_text(info) and kind in (int, float):
        name += " RANGE"
    return name


def bound_text(info: Any) -> str | None:
    """A number option's bounds as click writes them: x>=1, 1<=x<=64, x<=5."""
    low, high = getattr(info, "min", None), getattr(info, "max", None)
    if low is None and high is None:
        return None
    if high is None:
        return f"x>={low}"
    if low is None:
        return f"x<={high}"
    return f"{low}<=x<={high}"


def default_text(param: Any) -> str | None:
    """The default shown in `[default: ...]`; None when there is nothing worth showing."""
    shown = getattr(param, "show_default", True)
    if isinstance(shown, str):
        return shown
    if shown is False or getattr(param, "hidden", False):
        return None
    value = param.default
    if callable(value) and not isinstance(value, Enum):
        return None
    if getattr(param, "is_flag", False):
        secondary = getattr(param, "secondary_opts", None)
        if not secondary:
            return None
        return (param.opts if value else secondary)[0].lstrip("-")
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(item.value if isinstance(item, Enum) else item) for item in value)
    elif isinstance(value, Enum):
        value = value.value
    return None if value is None or value == "" else str(value)


def option_names(param: Any, annotation: Any, info: Any) -> tuple[str, str | None]:
    """(`-c, --checkpoint`, `PATH`), (`--fold-bn / --no-fold-bn`, None), or an argument's (`INPUTS...`, `TEXT`)."""
    label = type_label(param, annotation, info)
    if param.param_type_name == "argument":
        name = argument_name(param) + ("..." if param.nargs != 1 else "")
        return name, None if label in (None, argument_name(param)) else label
    names = ", ".join(sorted(param.opts, key=lambda opt: len(opt) - len(opt.lstrip("-"))))
    if getattr(param, "secondary_opts", None):
        names += " / " + ", ".join(param.secondary_opts)
    return names, label


def help_extras(param: Any, info: Any) -> str:
    """`[default: 16; 1<=x<=64; required]`: the default, the bound (shown only here) and whether required."""
    extras = [f"default: {text}" for text in [default_text(param)] if text]
    extras += [text for text in [bound_text(info)] if text]
    extras += ["required"] if param.required else []
    return f"[{'; '.join(extras)}]" if extras else ""


# ---------------------------------------------------------------------------------------------------
# The page


def help_width() -> int:
    """The terminal's width (COLUMNS when set; 80 in a pipe), at most MAX_WIDTH."""
    return max(40, min(MAX_WIDTH, shutil.get_terminal_size((80, 24)).columns))


def render_help(command: Any, ctx: Any, width: int | None = None) -> str:
    """The whole --help page of `command` as text (ANSI colours only when stdout is a terminal)."""
    from rich.console import Console
    from rich.padding import Padding
    from rich.text import Text

    console = Console(
        file=io.StringIO(), width=width or help_width(), force_terminal=sys.stdout.isatty(), highlight=False
    )
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    usage_lines = _wrapped_lines(f"Usage: {usage}", console.width - 2)
    console.print(Padding(Text("\n".join(usage_lines), style="bold", no_wrap=True), (0, 1)))
    console.print()
    if command.help:
        _print_prose(console, inspect.cleandoc(command.help).partition("\f")[0])
    declared = declared_parameters(command)
    panels = [(title, [_entry(param, *declared.get(param.name, (str, None))) for param in params])
              for title, params in _panels(command, ctx)]  # fmt: skip
    fitting = min(_NAME_COLUMN_MAX, (console.width - 4) // 2)
    names = [len(names) for _, entries in panels for names, _ in entries if len(names) <= fitting]
    for title, entries in panels:  # one name column for the whole page, as narrow as its names allow
        _print_options(console, title, entries, max(names or [0]))
    if isinstance(command, TyperGroup):
        _print_commands(console, command, ctx)
    if command.epilog:
        console.print()
        _print_prose(console, textwrap.dedent(command.epilog))  # not cleandoc: it would unindent the examples
    page = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in page.rstrip().splitlines()) + "\n"  # no padding to the width


def _panels(command: Any, ctx: Any) -> list[tuple[str, list[Any]]]:
    """Parameters by help panel: Arguments, Options, then each rich_help_panel in order of first use."""
    panels: dict[str, list[Any]] = {"Arguments": [], "Options": []}
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        default = "Arguments" if param.param_type_name == "argument" else "Options"
        panels.setdefault(getattr(param, "rich_help_panel", None) or default, []).append(param)
    return [(title, params) for title, params in panels.items() if params]


def _entry(param: Any, annotation: Any, info: Any) -> tuple[Any, Any]:
    """(names and type, help and extras) of one parameter, styled."""
    from rich.text import Text

    names, label = option_names(param, annotation, info)
    name_text = Text(names, style=_STYLE_OPTION)
    if label:
        name_text.append(f" {label}", style=_STYLE_TYPE)
    prose, extras = " ".join((param.help or "").split()), help_extras(param, info)
    help_text = Text(prose + ("  " if prose and extras else ""), overflow="fold")
    help_text.append(extras, style=_STYLE_EXTRA)
    return name_text, help_text


def _print_options(console: Any, title: str, entries: list[tuple[Any, Any]], column: int) -> None:
    """One panel; a name longer than `column` gets a line of its own and its help starts below it."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.panel import Panel
    from rich.table import Table

    body: list[Any] = []
    for names, help_text in entries:
        if len(names) <= column:
            grid = Table.grid(padding=(0, 2))
            grid.add_column(width=column, no_wrap=True)
            grid.add_column(ratio=1)
            grid.add_row(names, help_text)
            body.append(grid)
        else:
            body += [names, Padding(help_text, (0, 0, 0, column + 2))]
    console.print(Panel(Group(*body), title=title, title_align="left", border_style="dim"))


def _print_commands(console: Any, group: Any, ctx: Any) -> None:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    commands = [(name, group.get_command(ctx, name)) for name in group.list_commands(ctx)]
    commands = [(name, command) for name, command in commands if command is not None and not command.hidden]
    if not commands:
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style=_STYLE_OPTION)
    grid.add_column(ratio=1)
    for name, command in commands:
        summary = inspect.cleandoc(command.short_help or command.help or "").split("\n\n")[0]
        grid.add_row(name, Text(" ".join(summary.split()), overflow="fold"))
    console.print(Panel(grid, title="Commands", title_align="left", border_style="dim"))


def _print_prose(console: Any, text: str) -> None:
    """Paragraphs rewrapped to the width; indented lines (examples) kept as they are, wrapped with an indent."""
    from rich.padding import Padding
    from rich.text import Text

    for paragraph in text.split("\n\n"):
        lines = paragraph.strip("\n").splitlines()
        if not lines:
            continue
        if any(line.startswith((" ", "\t")) for line in lines):
            wrapped = [out for line in lines for out in _wrapped_lines(line, console.width - 2)]
            console.print(Padding(Text("\n".join(wrapped), no_wrap=True), (0, 1)))
        else:
            console.print(Padding(Text(" ".join(" ".join(lines).split()), overflow="fold"), (0, 1)))
        console.print()


def _wrapped_lines(line: str, width: int) -> list[str]:
    """`line` wrapped with a deeper indent on continuation lines, at spaces only (a command stays copyable).

    An option and its value stay on one line where they fit (`--plot s.png`, not `--plot` / `s.png`).
    """
    width = max(width, 20)
    indent = line[: len(line) - len(line.lstrip())]
    lines: list[str] = []
    current = ""
    for group in re.split(r" +(?=--?[A-Za-z])", line.strip()):  # an option with the words after it
        if current and len(current) + 1 + len(group) > width:
            lines.append(current)
            current = indent + _CONTINUATION + group
        else:
            current = f"{current} {group}" if current else indent + group
    lines.append(current)
    wrapped = []
    for text in lines:  # a group longer than a line: at any space
        first, rest = text[: len(text) - len(text.lstrip())], indent + _CONTINUATION
        parts = textwrap.wrap(text.strip(), width, initial_indent=first, subsequent_indent=rest,
                              break_long_words=False, break_on_hyphens=False)  # fmt: skip
        wrapped += parts or [""]
    return wrapped


def walk_commands(command: Any, path: str = "refine") -> Iterable[tuple[str, Any]]:
    """(command path, click command) for `command` and every command below it."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk_commands(sub, f"{path} {name}")
