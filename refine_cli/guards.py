"""Outputs never land on inputs: one check every command runs before any work.

`eval --json best.pt` used to replace the checkpoint with JSON and `eval --save-pred data/voc/labels`
the ground truth. Every command lists what it will write and what it reads; an output equal to an
input, inside an input folder, or a folder holding an input is refused with one line, exit code 2.
Paths are compared after resolving symlinks (and by inode for existing files, so hard links count).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from refine_cli.errors import RefineError

PathSpec = str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None
STDOUT = "-"


def _entries(named: Mapping[str, PathSpec]) -> list[tuple[str, Path]]:
    """(label, resolved path) for every path given; None and '-' (stdout) are skipped."""
    found: list[tuple[str, Path]] = []
    for label, spec in named.items():
        if spec is None:
            continue
        paths = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
        for path in paths:
            if path is None or str(path) in ("", STDOUT):  # unset, or stdout
                continue
            found.append((label, Path(os.path.realpath(Path(path).expanduser()))))
    return found


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def _describe(label: str, path: Path, article: bool = False) -> str:
    """'--json /x' or 'the dataset /x' (inputs always take 'the': 'would overwrite the --checkpoint /x')."""
    return f"{label} {path}" if label.startswith("-") and not article else f"the {label} {path}"


def refuse_output_over_inputs(outputs: Mapping[str, PathSpec], inputs: Mapping[str, PathSpec]) -> None:
    """Raise RefineError if an output is, is inside, or contains an input, or two outputs are one file.

    `outputs` and `inputs` map a label for the user (an option like "--json", or words like "input
    image") to a path, a list of paths, or None. Cost is linear in the number of paths (sets of paths
    and inodes, and the parents of each path), so thousands of predict inputs are cheap.
    """
    ins = _entries(inputs)
    outs = _entries(outputs)
    by_path = {path: label for label, path in ins}
    by_inode = {node: (label, path) for label, path in ins if (node := _inode(path)) is not None}
    for out_label, out in outs:
        node = _inode(out)
        if out in by_path or (node is not None and node in by_inode):
            in_label, in_path = (by_path[out], out) if out in by_path else by_inode[node]  # type: ignore[index]
            _refuse(f"{_describe(out_label, out)} would overwrite {_describe(in_label, in_path, True)}")
        for parent in out.parents:
            if parent in by_path:
                _refuse(f"{_describe(out_label, out)} is inside {_describe(by_path[parent], parent, True)}")
    out_paths: dict[Path, str] = {}
    for out_label, out in outs:
        if out in out_paths and out_paths[out] != out_label:
            _refuse(f"{out_label} and {out_paths[out]} are the same path {out}")
        out_paths.setdefault(out, out_label)
    for in_label, path in ins:
        for parent in path.parents:
            if parent in out_paths:
                _refuse(f"{_describe(out_paths[parent], parent)} contains {_describe(in_label, path, True)}")


def _refuse(message: str) -> None:
    raise RefineError(message, hint="write outputs somewhere else: never onto or into what the command reads")
