"""Run `refine prepare ...` through the real CLI (Typer's CliRunner) and collect its JSON report."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner


@dataclass
class PrepareRun:
    """Exit code, everything printed, and the parsed `--json` report (None when the run failed early)."""

    exit_code: int
    output: str
    report: dict[str, Any] | None


def run_prepare(args: list[str]) -> PrepareRun:
    """`refine prepare <args> --json FILE`; the report goes to a file so tables on stdout do not mix in."""
    from refine_cli.cli.app import app

    with tempfile.TemporaryDirectory(prefix="refine-report-") as folder:
        report_path = Path(folder) / "report.json"
        result = CliRunner().invoke(app, ["prepare", *args, "--json", str(report_path)])
        report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else None
    return PrepareRun(exit_code=result.exit_code, output=result.output, report=report)
