"""The root `refine` command: registers the subcommands and turns errors into one clear line."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer
from typer.core import TyperGroup

from refine_cli import __version__
from refine_cli.cli._console import err
from refine_cli.cli._options import fill_optional_values
from refine_cli.errors import RefineError

_DEBUG = {"on": os.environ.get("REFINE_DEBUG", "") not in ("", "0")}


def _report(line: str) -> None:
    err.print(f"[bold red]error:[/bold red] {line}", soft_wrap=True, markup=True)


class _RefineGroup(TyperGroup):
    """A Typer group whose commands fail with one line and exit code 2 instead of a traceback."""

    def main(self, args: Sequence[str] | None = None, *pargs, **kwargs):  # type: ignore[override]
        args = list(sys.argv[1:] if args is None else args)
        return super().main(fill_optional_values(args), *pargs, **kwargs)

    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except RefineError as error:
            if _DEBUG["on"]:
                raise
            _report(error.one_line())
            raise typer.Exit(error.exit_code) from None
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
            message = " ".join(str(error).split()) or type(error).__name__
            _report(f"internal error: {type(error).__name__}: {message} (rerun with --debug for the traceback)")
            raise typer.Exit(1) from None


app = typer.Typer(
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
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks (same as REFINE_DEBUG=1)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    if debug:
        _DEBUG["on"] = True


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
