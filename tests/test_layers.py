"""The layering of docs/architecture.md, held by the import-linter contracts in pyproject.toml.

Run here as well as by `make lint`, so a change that makes data flow backwards (a model importing a
dataset module, inference importing training, anything importing the CLI) fails the suite.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if command is None:
        pytest.fail("lint-imports is missing: install the dev extra (make install)")
    return subprocess.run([command, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_every_import_contract_holds() -> None:
    result = _lint_imports("--no-cache")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "4 kept, 0 broken" in result.stdout


def test_a_backwards_import_breaks_a_contract(tmp_path: Path) -> None:
    """The contracts are live: a copy of the package where models/ imports data/ is refused."""
    copy = tmp_path / "refine_cli"
    shutil.copytree(ROOT / "refine_cli", copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "models" / "peers.py").open("a") as handle:
        handle.write("\nfrom refine_cli.data.format import unified  # noqa: E402,F401\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; "
            "sys.exit(lint_imports_command(['--no-cache']))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
    assert "refine_cli.models.peers -> refine_cli.data.format.unified" in result.stdout
