"""Byte-level fingerprints of files and folders: "this input is untouched" as one comparison."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_digest(path: Path) -> str:
    """sha256 over a file, or over every file under a folder (relative names and bytes, hidden ones too)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    sha = hashlib.sha256()
    for file in files:
        name = file.relative_to(path) if path.is_dir() else file.name
        sha.update(str(name).encode() + b"\0" + file.read_bytes())
    return sha.hexdigest()
