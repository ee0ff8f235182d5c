"""The root CLI: errors become one line with the right exit code; shared options parse as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from refine_cli.cli._options import JsonOpt
from refine_cli.cli.app import _RefineGroup, app
from refine_cli.errors import RefineError


def _probe_app() -> typer.Typer:
    probe = typer.Typer(cls=_RefineGroup, pretty_exceptions_enable=False)

    @probe.command()
    def fail(kind: str, json_out: JsonOpt = None) -> None:
        if kind == "user":
            raise RefineError("the file x.png is missing", hint="run `refine prepare` first")
        if kind == "bug":
            raise ValueError("unexpected\nmulti-line")
        if kind == "path":
            open("/proc/nonexistent/out.txt", "w")  # noqa: SIM115 - the error is the point
        if kind == "oom":
            import torch

            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        typer.echo(f"json={json_out}")

    @probe.command()
    def other(count: int = typer.Option(1, "--count", min=1)) -> None:  # also keeps `fail` a subcommand
        pass

    return probe


def test_refine_error_is_one_line_exit_2() -> None:
    result = CliRunner().invoke(_probe_app(), ["fail", "user"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: the file x.png is missing (run `refine prepare` first)"]
    assert "Traceback" not in result.output


def test_unexpected_error_is_one_line_exit_1() -> None:
    result = CliRunner().invoke(_probe_app(), ["fail", "bug"])
    assert result.exit_code == 1
    assert "internal error: ValueError: unexpected multi-line" in result.output
    assert "Traceback" not in result.output


def test_gpu_out_of_memory_is_a_user_error_with_a_hint() -> None:
    result = CliRunner().invoke(_probe_app(), ["fail", "oom"])
    assert result.exit_code == 2 and "ran out of memory" in result.output and "--batch" in result.output
    assert "Traceback" not in result.output


def test_json_option_optional_value() -> None:
    runner = CliRunner()
    assert "json=-" in runner.invoke(_probe_app(), ["fail", "ok", "--json"]).output
    assert "json=out.json" in runner.invoke(_probe_app(), ["fail", "ok", "--json", "out.json"]).output
    assert "json=None" in runner.invoke(_probe_app(), ["fail", "ok"]).output


def test_version_and_help() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("refine ")
    help_run = subprocess.run([sys.executable, "-m", "refine_cli", "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0 and "Usage" in help_run.stdout


def test_optional_value_respects_value_shape() -> None:
    import re

    from refine_cli.cli import _options

    patterns = {"--msc": re.compile(r"[0-9.,\s]*")}
    defaults = {"--json": "-", "--msc": "0.5,1"}
    original = (_options.OPTIONAL_VALUE_DEFAULTS.copy(), _options.OPTIONAL_VALUE_PATTERNS.copy())
    try:
        _options.OPTIONAL_VALUE_DEFAULTS.update(defaults)
        _options.OPTIONAL_VALUE_PATTERNS.update(patterns)
        fill = _options.fill_optional_values
        assert fill(["predict", "--msc", "photo.jpg"]) == ["predict", "--msc", "0.5,1", "photo.jpg"]
        assert fill(["predict", "--msc", "0.75,1.5", "a.jpg"]) == ["predict", "--msc", "0.75,1.5", "a.jpg"]
        assert fill(["eval", "--msc", "--flip"]) == ["eval", "--msc", "0.5,1", "--flip"]
        assert fill(["eval", "--json", "out.json"]) == ["eval", "--json", "out.json"]
        assert fill(["eval", "--json"]) == ["eval", "--json", "-"]
    finally:
        _options.OPTIONAL_VALUE_DEFAULTS.clear()
        _options.OPTIONAL_VALUE_DEFAULTS.update(original[0])
        _options.OPTIONAL_VALUE_PATTERNS.clear()
        _options.OPTIONAL_VALUE_PATTERNS.update(original[1])


def test_bad_paths_usage_errors_and_json_targets_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    path = runner.invoke(_probe_app(), ["fail", "path"])
    assert path.exit_code == 2 and "cannot use /proc/nonexistent/out.txt" in path.output
    usage = runner.invoke(_probe_app(), ["other", "--count", "0"])
    lines = [line for line in usage.output.splitlines() if line.strip()]
    assert usage.exit_code == 2 and len(lines) == 1 and "--count" in lines[0] and "--help" in lines[0]
    folder = runner.invoke(_probe_app(), ["fail", "ok", "--json", str(tmp_path)])
    assert folder.exit_code == 2 and "is a folder" in folder.output and "json=" not in folder.output
    missing = runner.invoke(_probe_app(), ["fail", "ok", "--json", str(tmp_path / "no" / "r.json")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    fine = runner.invoke(_probe_app(), ["fail", "ok", "--json", str(tmp_path / "r.json")])
    assert fine.exit_code == 0 and "json=" in fine.output


def test_every_command_help_has_examples() -> None:
    """The README promises `--help` with examples for every command, `refine prepare voc` as much as `eval`."""

    def leaves(command, path: str) -> list:  # noqa: ANN001 - typer's (vendored) click commands
        if hasattr(command, "commands"):  # a group: refine itself, refine prepare
            return [leaf for name, sub in command.commands.items() for leaf in leaves(sub, f"{path} {name}")]
        return [(path, command)]

    commands = leaves(typer.main.get_command(app), "refine")
    paths = {path for path, _ in commands}
    assert {"refine eval", "refine prepare voc", "refine prepare shapes", "refine prepare custom"} <= paths, paths
    missing = [path for path, command in commands if "Examples" not in f"{command.help}\n{command.epilog}"]
    assert not missing, missing


@pytest.mark.parametrize("args", [["--max-pixels", "-1", "models"], ["--nope", "models"]])
def test_errors_in_the_root_options_are_one_line(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.output.startswith("error: ") and len(result.output.splitlines()) == 1
    assert "Usage:" not in result.output and "╭" not in result.output


@pytest.mark.parametrize(
    "error",
    [MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory")],
)
def test_the_host_running_out_of_memory_is_one_line(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    import refine_cli.engine.bench.catalog as catalog

    def exhausted(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(catalog, "describe_models", exhausted)
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 2 and "the machine ran out of memory" in result.output
    assert "internal error" not in result.output and len(result.output.splitlines()) == 1
