"""`--help` of every command at 80 columns: nothing cut, examples indented, click's types, defaults shown."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import pytest
import typer
from typer.testing import CliRunner

from refine_cli.cli._help import RefineGroup, RefineTyper, walk_commands
from refine_cli.cli.app import app

WIDTH = 80
PYTHON_TYPES = re.compile(r"<(bool|int|float|str|path|list\[|int range|float range|Path)")
CLICK_TYPE = re.compile(r"^(TEXT|INTEGER( RANGE)?|FLOAT( RANGE)?|PATH|FILE|SECONDS|KB/S|N|HxW|KEY=VALUE|\[.+\])$")


def _pages() -> dict[str, tuple[object, str]]:
    """command path -> (click command, its --help page at 80 columns), for the whole tree."""
    root = typer.main.get_command(app)
    pages = {}
    for path, command in walk_commands(root):
        result = CliRunner().invoke(app, [*path.split()[1:], "--help"], env={"COLUMNS": str(WIDTH)})
        assert result.exit_code == 0, (path, result.output)
        pages[path] = (command, result.output)
    return pages


@pytest.fixture(scope="module")
def pages() -> dict[str, tuple[object, str]]:
    return _pages()


def _flat(page: str) -> str:
    """The page without panel borders, whitespace collapsed: a wrapped description reads as one string."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", page).split())


def _shown_params(command) -> list:  # noqa: ANN001 - a click command
    return [param for param in command.params if not getattr(param, "hidden", False)]


def test_every_page_fits_80_columns_and_cuts_nothing(pages: dict[str, tuple[object, str]]) -> None:
    assert {"refine", "refine train", "refine predict", "refine prepare custom", "refine prepare voc"} <= set(pages)
    for path, (command, page) in pages.items():
        too_wide = [line for line in page.splitlines() if len(line) > WIDTH]
        assert not too_wide, (path, too_wide)
        assert "…" not in page, (path, page)
        assert not PYTHON_TYPES.search(page), (path, PYTHON_TYPES.search(page))
        usage = page.strip().splitlines()[0]
        assert usage.startswith(f"Usage: {path} [OPTIONS]") and "{" not in usage, (path, usage)
        flat = _flat(page)
        for param in _shown_params(command):
            for name in [*param.opts, *getattr(param, "secondary_opts", [])]:
                if name.startswith("-"):  # every option name whole, never `--pretrained-bac`
                    assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", page), (path, name)
            help_text = " ".join((param.help or "").split())
            assert help_text in flat, (path, param.name, help_text)  # the whole description, wrapped not cut


def test_arguments_in_usage_and_types_as_click_spells_them(pages: dict[str, tuple[object, str]]) -> None:
    assert "Usage: refine predict [OPTIONS] [INPUTS]..." in pages["refine predict"][1]
    assert "Usage: refine convert [OPTIONS] SRC" in pages["refine convert"][1]
    assert "Usage: refine prepare custom [OPTIONS] NAME" in pages["refine prepare custom"][1]
    for path, (command, page) in pages.items():
        flat = _flat(page)
        cells = [found.group(1) for line in page.splitlines() if (found := re.match(r"│ (-\S.*?)(?: {2,}|\s*│)", line))]
        for param in _shown_params(command):
            if param.param_type_name != "option" or param.is_flag:
                continue
            names = ", ".join(sorted(param.opts, key=lambda opt: len(opt) - len(opt.lstrip("-"))))
            cell = next((cell for cell in cells if cell.startswith(f"{names} ")), None)
            assert cell, (path, names)
            label = cell[len(names) + 1 :]
            assert CLICK_TYPE.match(label), (path, names, label)
            help_text = " ".join((param.help or "").split())
            described = flat.index(f"{cell} {help_text}") + len(cell) + 1 + len(help_text)
            after = flat[described:].lstrip()
            extras = after[: after.index("]") + 1] if after.startswith("[") else ""
            bounds = re.findall(r"x[<>]=|<=x", f"{cell} {help_text} {extras}")
            if getattr(param, "min", None) is not None or getattr(param, "max", None) is not None:
                assert label.endswith("RANGE") or not label.startswith(("INTEGER", "FLOAT")), (path, names, label)
                assert len(bounds) == 1 and bounds[0] in extras, (path, names, bounds)  # once, after the help
    train = _flat(pages["refine train"][1])
    assert "--amp [off|bf16|fp16]" in train and "--schedule [multistep|poly|constant]" in train
    assert "--crop INTEGER RANGE" in train and "--lr FLOAT" in train and "--data PATH" in train
    assert "--checkpoint PATH" in _flat(pages["refine bench"][1])
    assert "--precision [fp32|tf32|bf16|fp16]" in _flat(pages["refine eval"][1])
    check = _flat(pages["refine check"][1])
    assert "--gallery-samples INTEGER RANGE" in check and "[default: 16; 1<=x<=64]" in check


def test_defaults_are_shown_and_train_says_a_recipe_may_change_them(pages: dict[str, tuple[object, str]]) -> None:
    from refine_cli.engine.train.config import TrainConfig

    builtin = TrainConfig()
    train = _flat(pages["refine train"][1])
    for flag, value in (("--crop", builtin.data.crop), ("--batch", builtin.data.batch),
                        ("--workers", builtin.data.workers), ("--lr", builtin.optim.encoder_lr),
                        ("--epochs", builtin.train.epochs), ("--model", builtin.model.name)):  # fmt: skip
        shown = re.search(rf"{flag} \S+( RANGE)? .*?\[default: ([^]]+?) or the recipe's", train)
        assert shown and shown.group(2) == str(value), (flag, shown and shown.group(0))
    assert "[default: no-pretrained-backbone or the recipe's]" in train
    assert "a recipe, the own-data sizing or a resumed run may replace" in train
    for path, (command, page) in pages.items():
        flat = _flat(page)
        for param in _shown_params(command):
            plain_default = param.default not in (None, "", [], False) and not callable(param.default)
            if param.param_type_name == "option" and plain_default and param.show_default is not False:
                help_text = " ".join((param.help or "").split())
                after = flat[flat.index(help_text) + len(help_text) :]
                assert after.lstrip().startswith("[default:"), (path, param.name, after[:60])


def test_examples_keep_their_indentation(pages: dict[str, tuple[object, str]]) -> None:
    checked = 0
    for path, (_, page) in pages.items():
        lines = page.splitlines()
        if " Examples:" not in lines:
            continue
        block = lines[lines.index(" Examples:") + 1 :]
        in_command = False
        for line in block:
            starts = line.lstrip().startswith(("refine ", "torchrun "))
            if starts:
                assert line.startswith("   ") and not line.startswith("    "), (path, line)
                checked += 1
            elif line.strip() and in_command:  # the rest of a wrapped example: indented deeper, never column 0
                assert line.startswith("       "), (path, line)
            in_command = starts or (in_command and bool(line.strip()))
    assert checked > 40


def test_workers_say_what_they_run_and_the_old_spelling_still_works(pages: dict[str, tuple[object, str]]) -> None:
    assert "--workers INTEGER RANGE Data loader processes" in _flat(pages["refine train"][1])
    for path in ("refine eval", "refine predict"):
        flat = _flat(pages[path][1])
        assert "-j, --crf-workers, --workers INTEGER RANGE Processes running the dense CRF, with --crf" in flat
    assert "Processes converting samples" in _flat(pages["refine prepare voc"][1])
    assert "Processes checking samples" in _flat(pages["refine check"][1])
    predict = typer.main.get_command(app).commands["predict"]
    for spelling in ("--crf-workers", "--workers", "-j"):
        ctx = predict.make_context("predict", ["a.jpg", "-c", "m.pt", "-o", "out", spelling, "3"])
        assert ctx.params["workers"] == 3


def test_piped_help_is_80_columns_wide() -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    piped = subprocess.run([sys.executable, "-m", "refine_cli", "train", "--help"], capture_output=True, text=True,
                           env=env, check=True).stdout  # fmt: skip
    lines = piped.splitlines()
    assert max(len(line) for line in lines) <= WIDTH and "\x1b[" not in piped
    assert "--pretrained-backbone / --no-pretrained-backbone" in piped


class _Colour(str, Enum):
    red = "red"
    blue = "blue"


def test_the_typer_and_click_features_the_help_relies_on() -> None:
    """Fails when a Typer (or click) upgrade changes an attribute or hook `_help.py` reads."""
    probe = RefineTyper(cls=RefineGroup, add_completion=False, no_args_is_help=True)

    @probe.command("run", epilog="Examples:\n\n  probe run a b --count 3\n")
    def run(
        names: Annotated[list[str], typer.Argument(help="Things.")],
        count: Annotated[int, typer.Option("--count", "-n", min=1, max=5, help="How many.")] = 3,
        colour: Annotated[_Colour, typer.Option("--colour", help="Which.")] = _Colour.red,
        where: Annotated[Optional[Path], typer.Option("--where", help="A place.")] = None,  # noqa: UP045
        fast: Annotated[bool, typer.Option("--fast/--slow", help="Speed.")] = True,
        ratio: Annotated[float, typer.Option("--ratio", metavar="R", help="A ratio.")] = 0.5,
    ) -> None:
        """Run the probe."""

    @probe.command("other")
    def other() -> None:  # a second command keeps `run` a subcommand
        """Nothing."""

    result = CliRunner().invoke(probe, ["run", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    flat = _flat(result.output)
    assert "Usage: root run [OPTIONS] NAMES..." in flat or "Usage: probe run [OPTIONS] NAMES..." in flat, flat
    for expected in ("NAMES... TEXT Things. [required]", "-n, --count INTEGER RANGE How many. [default: 3; 1<=x<=5]",
                     "--colour [red|blue] Which. [default: red]", "--where PATH A place.",
                     "--fast / --slow Speed. [default: fast]", "--ratio R A ratio. [default: 0.5]"):  # fmt: skip
        assert expected in flat, (expected, flat)
    assert "\n   probe run a b --count 3" in result.output
    group_page = CliRunner().invoke(probe, [], env={"COLUMNS": "80"})
    assert group_page.exit_code == 2 and "Commands" in group_page.output and "Run the probe." in group_page.output
