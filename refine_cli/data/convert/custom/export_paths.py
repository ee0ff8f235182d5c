"""A path that an export names must stay inside the export: one rule for every own-data source.

An annotation file is data, and data can lie: a COCO `file_name` of `../../secret.png`, a labelme
`imagePath` of `/home/me/.ssh/id.png` or a YOLO list line pointing at `/etc` would make `prepare` copy
any readable image into a dataset that may be shared. Every path an export names is therefore joined
to the folder it is relative to, normalised WITHOUT following links, and refused when it is absolute or
leaves the export folder. Links a user placed inside the export are followed as usual (their choice);
what is refused is a file naming a place outside. Windows separators (labelme writes `..\\img.jpg` on
Windows) are read as separators.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from refine_cli.errors import RefineError


class OutsideExport(RefineError):  # noqa: N818 - a refusal the caller words for its source
    """A path named by an export that is absolute or climbs out of the export folder."""


def as_posix(named: str) -> str:
    """A name as written in an export, with Windows separators turned into '/'."""
    return PureWindowsPath(named).as_posix() if "\\" in named else named


def inside_export(root: Path, base: Path, named: str, what: str) -> Path:
    """`base / named` when it lies inside `root`; OutsideExport (naming `what`) when it does not.

    `base` is the folder the name is relative to (the JSON's folder, a list file's folder), itself inside
    `root`. The check is on the normalised path, so `a/../b.jpg` is fine and `../b.jpg` from the root is not;
    an absolute path is accepted only when it lies inside `root`.
    """
    text = as_posix(str(named))
    if not text or "\0" in text:
        raise OutsideExport(f"{what} names no file ({text!r})")
    posix = PurePosixPath(text)
    joined = Path(os.path.abspath(Path(base) / posix))  # normalised, links not followed; absolute stays itself
    if PureWindowsPath(text).drive or (posix.is_absolute() and not is_inside(root, joined)):
        raise OutsideExport(
            f"{what} is the absolute path {text!r} outside the export folder {root}",
            hint="an export may only name files inside it; make the path relative to it",
        )
    if not is_inside(root, joined):
        raise OutsideExport(
            f"{what} {text!r} leads outside the export folder {root}",
            hint="an export may only name files inside it; move the files in or fix the path",
        )
    return joined


def is_inside(root: Path, path: Path) -> bool:
    """Whether `path` (normalised, links not followed) lies inside `root`."""
    root_norm, path_norm = Path(os.path.abspath(root)), Path(os.path.abspath(path))
    return path_norm == root_norm or root_norm in path_norm.parents


def files_by_name(folder: Path, suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
    """file name -> every file of that name under `folder` (for exports that name images by URL or file name)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if path.suffix.lower() in suffixes and not path.name.startswith(".") and path.is_file():
            found.setdefault(path.name, []).append(path)
    return found
