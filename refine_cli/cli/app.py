"""The root `refine` command: registers the subcommands and turns errors into one clear line."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import typer

try:
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # typer releases that use the click package itself
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[no-redef]

from refine_cli import __version__
from refine_cli.cli._console import err, reports_to_stderr, tagged
from refine_cli.cli._help import RefineGroup, RefineTyper
from refine_cli.cli._options import fill_optional_values
from refine_cli.errors import RefineError
from refine_cli.fileio import disk_full_error, is_disk_full
from refine_cli.threads import wait_quietly_when_busy

wait_quietly_when_busy()  # before anything loads torch (and with it OpenMP, which reads the policy once)
_DEBUG = {"on": os.environ.get("REFINE_DEBUG", "") not in ("", "0")}
# Commands that run models: glibc's allocator is tuned for them before the first tensor exists.
MODEL_COMMANDS = frozenset({"bench", "predict", "eval", "train"})


def _report(line: str) -> None:
    err.print(tagged("error:", "bold red", line), soft_wrap=True)  # the line is text, never markup


class _RefineGroup(RefineGroup):
    """A Typer group whose commands fail with one line and exit code 2 instead of a traceback."""

    def main(self, args: Sequence[str] | None = None, *pargs, **kwargs):  # type: ignore[override]
        try:
            args = fill_optional_values(list(sys.argv[1:] if args is None else args))
            _check_json_destinations(args)  # before any work: a long run must not fail at its last write
        except RefineError as error:
            _report(error.one_line())
            sys.exit(error.exit_code)
        with reports_to_stderr("-" in json_destinations(args)):  # `--json -`: stdout is the JSON alone
            return super().main(args, *pargs, **kwargs)

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        """The root's own options (`refine --max-pixels -1 models`): a bad one is one line like any other."""
        try:
            return super().parse_args(ctx, args)
        except NoArgsIsHelpError:
            raise
        except UsageError as error:
            _report(f"{' '.join(error.format_message().split())} (see `refine --help`)")
            sys.exit(2)

    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except RefineError as error:
            if _DEBUG["on"]:
                raise
            _report(error.one_line())
            raise typer.Exit(error.exit_code) from None
        except NoArgsIsHelpError:
            raise
        except UsageError as error:  # a bad option value or a missing argument: one line, like every error
            where = error.ctx.command_path if error.ctx is not None else "refine"
            _report(f"{' '.join(error.format_message().split())} (see `{where} --help`)")
            raise typer.Exit(2) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except BrokenPipeError:  # `refine ... | head`: the reader left; stop quietly like other Unix tools
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
        except KeyboardInterrupt:
            _report("interrupted")
            raise typer.Exit(130) from None
        except Exception as error:  # noqa: BLE001 - the last line of defence for the user
            if _DEBUG["on"]:
                raise
            if type(error).__name__ == "OutOfMemoryError":  # torch's, matched by name to keep imports light
                _report("the GPU ran out of memory (use a smaller --batch, --size/--crop or --tile, or --amp bf16)")
                raise typer.Exit(2) from None
            if _is_host_out_of_memory(error):
                _report(
                    "the machine ran out of memory (use a smaller --batch, --size/--crop or --tile, fewer "
                    "--workers, or a machine with more memory)"
                )
                raise typer.Exit(2) from None
            if is_disk_full(error):  # ENOSPC from code that does not write through refine_cli.fileio
                target = Path(error.filename or ".")
                what = f"write {target.name}" if error.filename else "write its output"
                _report(disk_full_error(target.parent if error.filename else target, None, what).one_line())
                raise typer.Exit(2) from None
            if isinstance(error, OSError) and error.filename is not None:  # a path the user gave us
                _report(f"cannot use {error.filename}: {error.strerror or error} (check the path and its permissions)")
                raise typer.Exit(2) from None
            message = " ".join(str(error).split()) or type(error).__name__
            _report(f"internal error: {type(error).__name__}: {message} (rerun with --debug for the traceback)")
            raise typer.Exit(1) from None


def _is_host_out_of_memory(error: BaseException) -> bool:
    """MemoryError, or the RuntimeError torch's CPU allocator raises when an allocation fails."""
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("DefaultCPUAllocator" in text or "Failed to allocate" in text)


def _check_json_destinations(args: Sequence[str]) -> None:
    """`--json PATH` (or `--json=PATH`) must be writable: checked up front so hours of training are not lost."""
    for value in json_destinations(args):
        if value == "-":
            continue
        path = Path(value).expanduser()
        parent = path.parent if str(path.parent) else Path(".")
        if path.is_dir():
            raise RefineError(f"--json {value} is a folder", hint="give a file name, e.g. --json report.json")
        if not parent.is_dir():
            raise RefineError(f"--json {value}: folder {parent} does not exist", hint="create it or choose another")
        if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise RefineError(f"--json {value} is not writable", hint="choose another path")


def json_destinations(args: Sequence[str]) -> list[str]:
    """The values of every `--json PATH` and `--json=PATH` on a command line, in order."""
    found = [arg.split("=", 1)[1] for arg in args if arg.startswith("--json=")]
    found += [value for flag, value in zip(args, args[1:], strict=False) if flag == "--json"]
    return found


app = RefineTyper(
    cls=_RefineGroup,
    name="refine",
    help="RefineNet-family semantic segmentation: prepare datasets, train, predict, evaluate, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"refine {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks (same as REFINE_DEBUG=1)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    max_pixels: int | None = typer.Option(
        None,
        "--max-pixels",
        min=0,
        help="Refuse images whose header claims more pixels than this, before decoding them "
        "(default 100000000, or REFINE_MAX_PIXELS; 0 = no limit).",
    ),
) -> None:
    if debug:
        _DEBUG["on"] = True
    if max_pixels is not None:
        from refine_cli.data.format.imageio import set_max_pixels

        set_max_pixels(max_pixels)
    if ctx.invoked_subcommand in MODEL_COMMANDS:
        from refine_cli.engine.bench.cpu_tuning import tune_allocator

        tune_allocator()


def _register_commands() -> None:
    # One module per subcommand; each exposes register(app). Imports stay light: heavy libraries
    # (torch, cv2) are imported inside the command functions so `refine --help` is instant.
    from refine_cli.cli import register_all

    register_all(app)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    command = typer.main.get_command(app)
    command.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="refine")


_register_commands()
