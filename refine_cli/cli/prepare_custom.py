"""`refine prepare custom NAME --from PATH`: a user's own labelled images into the unified format.

Thin: options in, the `custom` converter through the common pipeline (parallel, resumable, atomic),
then the summary, the class pixel frequencies and a note for every empty or rare class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from refine_cli.cli._console import warn
from refine_cli.cli._prepare_common import PrepareCommon, prepare_command

_EPILOG = (
    "Examples:\n\n  refine prepare custom roads --from cvat_export/ --root data\n"
    "  refine prepare custom leaves --from photos/ --classes classes.txt --val-fraction 0.2\n"
    "  refine prepare custom cells --from train.json --from val.json --images imgs/\n\n"
    "Layouts, class files and rules: docs/custom-data.md"
)


SourcesOpt = Annotated[
    list[Path],
    typer.Option(
        "--from",
        help="A folder (images/ + masks/, or a VOC/CVAT/Datumaro export) or a COCO .json "
        "(repeat --from for train.json and val.json).",
        show_default=False,
    ),
]
FormatOpt = Annotated[str, typer.Option("--format", help="auto, folder, voc or coco (auto: detected from --from).")]
ClassesOpt = Annotated[
    Optional[Path],  # noqa: UP045 - typer evaluates this at runtime
    typer.Option(
        "--classes",
        help="Class file: one name per line, `name r g b`, CVAT labelmap `name:r,g,b::`, or JSON/YAML "
        "[{name, color}] (default: the export's labelmap.txt or COCO categories).",
    ),
]
ImagesOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--images", help="COCO only: the folder of the images (default: beside the JSON)."),
]
ValFractionOpt = Annotated[
    float, typer.Option("--val-fraction", min=0.0, max=0.9, help="Share held out for val when the source has no val.")
]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Seed of that random split (kept in meta.json).")]
VoidOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--void",
        help="A mask value (e.g. 0 for data without background) or r,g,b colour meaning 'not labelled': "
        "-> 255, ignored in training. Index values above it then count the classes from 0. Repeatable.",
    ),
]
KeepEmptyOpt = Annotated[
    bool, typer.Option("--keep-empty", help="COCO: keep images without annotations, all background.")
]
CrowdAsClassOpt = Annotated[
    bool, typer.Option("--crowd-as-class", help="COCO: draw iscrowd=1 regions as their class (CVAT marks masks so).")
]
UnknownAsIgnoreOpt = Annotated[
    bool, typer.Option("--unknown-as-ignore", help="Map mask values/colours in no class to 255 instead of failing.")
]


def custom_command(
    common: PrepareCommon,
    name: Annotated[str, typer.Argument(help="Dataset name: written to <root>/NAME.", show_default=False)],
    sources: SourcesOpt,
    fmt: FormatOpt = "auto",
    classes: ClassesOpt = None,
    images: ImagesOpt = None,
    val_fraction: ValFractionOpt = 0.1,
    seed: SeedOpt = 0,
    void: VoidOpt = None,
    keep_empty: KeepEmptyOpt = False,
    crowd_as_class: CrowdAsClassOpt = False,
    unknown_as_ignore: UnknownAsIgnoreOpt = False,
) -> None:
    """Your own labelled images: a folder of images + masks, a VOC-style (CVAT) export or a COCO JSON."""
    options = {
        "name": name,
        "from": [str(path) for path in sources],
        "format": fmt,
        "classes": str(classes) if classes else None,
        "images": str(images) if images else None,
        "val_fraction": val_fraction,
        "seed": seed,
        "void": list(void or []),
        "keep_empty": keep_empty,
        "crowd_as_class": crowd_as_class,
        "unknown_as_ignore": unknown_as_ignore,
    }
    report = common.run("custom", options)
    if report.check is not None:
        from refine_cli.data.format.check import class_balance_notes

        check = report.check
        for note in class_balance_notes(check.classes, check.class_pixels, check.class_images):
            warn(note)


def register(prepare_app: typer.Typer) -> None:
    """Attach `custom` to the `refine prepare` sub-app."""
    prepare_command(prepare_app, "custom", local=True, epilog=_EPILOG)(custom_command)
