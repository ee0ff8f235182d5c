"""The official key listings: every state_dict key and shape of the released checkpoints (21 classes).

Copied verbatim from the project's reference folder (shared/reference/checkpoints) into
tests/models/official_keys/, so the import tests always run, in any checkout.
"""

from __future__ import annotations

import json
from pathlib import Path

CHECKPOINTS = Path(__file__).resolve().parent / "official_keys"


def listing_names() -> list[str]:
    """Model names with an official key listing."""
    names = sorted(p.stem for p in CHECKPOINTS.glob("*.json"))
    assert len(names) == 5, f"expected the 5 official key listings in {CHECKPOINTS}, found {names}"
    return names


def load_listing(name: str) -> tuple[dict[str, list[int]], int]:
    """(official key -> shape, parameter count) for one listing."""
    path = CHECKPOINTS / f"{name}.json"
    data = json.loads(path.read_text())
    params = data.pop("_params")
    return data, params
