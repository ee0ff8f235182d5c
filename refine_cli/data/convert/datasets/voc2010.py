"""Shared pieces of the converters built on PASCAL VOC 2010 images (Person-Part, PASCAL-Context).

Both datasets ship annotations only; their images come from `VOCtrainval_03-May-2010.tar`
(`VOCdevkit/VOC2010/JPEGImages/<id>.jpg`). Finding that folder, reading id lists and checking a
label against its image live here so the two converters report problems the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from refine_cli.errors import RefineError

VOC2010_SUBDIR = Path("VOCdevkit") / "VOC2010"
VOC2010_ARCHIVE = "VOCtrainval_03-May-2010.tar"


def find_voc2010(extracted: Path) -> Path:
    """The `VOCdevkit/VOC2010` folder inside an extracted VOC 2010 archive (or given directly)."""
    extracted = Path(extracted)
    for candidate in (extracted / VOC2010_SUBDIR, extracted / "VOC2010", extracted):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise RefineError(
        f"{extracted} does not contain {VOC2010_SUBDIR}/JPEGImages",
        hint=f"pass the official {VOC2010_ARCHIVE} (the VOC 2010 trainval release)",
    )


def find_folder(base: Path, accept: Callable[[Path], bool], max_depth: int = 3) -> Path | None:
    """The shallowest folder at or under `base` that `accept`s (skipping macOS `__MACOSX` litter), or None.

    Archives differ in nesting (the extraction folder may or may not repeat the archive's top folder),
    so converters look for the folder by its contents instead of assuming one fixed path.
    """
    level = [Path(base)]
    for depth in range(max_depth + 1):
        next_level: list[Path] = []
        for folder in level:
            if accept(folder):
                return folder
            if depth < max_depth:
                next_level += sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "__MACOSX")
        level = next_level
    return None
