"""The official key listings in shared/reference/checkpoints, located beside the repo root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"
CHECKPOINTS = REFERENCE / "checkpoints"


def listing_names() -> list[str]:
    """Model names with an official key listing (empty when the shared folder is absent)."""
    return sorted(p.stem for p in CHECKPOINTS.glob("*.json")) if CHECKPOINTS.is_dir() else []


def load_listing(name: str) -> tuple[dict[str, list[int]], int]:
    """(official key -> shape, parameter count) for one listing; skips when the folder is missing."""
    path = CHECKPOINTS / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"official key listing {path} not found (the shared/reference folder beside the repo)")
    data = json.loads(path.read_text())
    params = data.pop("_params")
    return data, params
