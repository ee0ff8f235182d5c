"""Where datasets live: `--root` / `$REFINE_DATA` / ./data, and `--data NAME` resolved under it.

Shared by `prepare`, `train` and `eval`, so a neutral module instead of one command importing another.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_root() -> Path:
    """$REFINE_DATA, else ./data."""
    return Path(os.environ.get("REFINE_DATA") or "data")


def dataset_path(data: str) -> Path:
    """--data as given: a dataset folder, or the name of one under $REFINE_DATA (./data)."""
    path = Path(data).expanduser()
    if not path.exists() and not path.is_absolute() and (default_root() / data).exists():
        path = default_root() / data
    return path
