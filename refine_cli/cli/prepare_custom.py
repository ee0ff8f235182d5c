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
    "  refine prepare custom cells --from train.json --from val.json --images imgs/\n"
    "  refine prepare custom pets --from labelme_jsons/ --classes labels.txt\n"
    "  refine prepare custom weeds --from project-3-at-2024.json --images ~/.local/share/label-studio/media\n"
    "  refine prepare custom parts --from dataset/data.yaml --map bolt=screw --map washer=255\n\n"
    "Layouts, class files and rules: docs/custom-data.md"
)


SourcesOpt = Annotated[
    list[Path],
    typer.Option(
        "--from",
        help="A folder (images/ + masks/, a VOC/CVAT/Datumaro export, labelme JSONs, *_polygons.json), a COCO "
        "or Label Studio .json (repeat --from for COCO train.json and val.json), or a YOLO data.yaml.",
        show_default=False,
    ),
]
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        help="auto, folder, voc, coco, labelme, label-studio, yolo or cityscapes (auto: detected from --from).",
    ),
]
ClassesOpt = Annotated[
    Optional[Path],  # noqa: UP045 - typer evaluates this at runtime
    typer.Option(
        "--classes",
        help="Class file: one name per line (labelme's labels.txt too), `name r g b`, CVAT labelmap "
        "`name:r,g,b::`, or JSON/YAML [{name, color}] (default: the export's labelmap.txt, COCO categories, "
        "YOLO names, or background + the labelme/Label Studio labels found).",
    ),
]
ImagesOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--images",
        help="COCO: the folder of the images (default: beside the JSON); Label Studio: the media folder the "
        "task URLs point into (default: the export's folder).",
    ),
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
    bool,
    typer.Option(
        "--unknown-as-ignore", help="Map mask values/colours and shape labels in no class to 255 instead of failing."
    ),
]
MapOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--map",
        help="OLD=NEW: rename a class, merge several into one (--map truck=car --map bus=car), or send one to "
        "ignore (=255) or to background. Repeatable; any own-data source.",
    ),
]
MapFileOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--map-file", help="A YAML or JSON file of OLD: NEW pairs, read like --map."),
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
    class_map: MapOpt = None,
    map_file: MapFileOpt = None,
) -> None:
    """Your own labelled images: masks, CVAT/VOC, COCO, LabelMe, Label Studio, YOLO-seg or Cityscapes polygons."""
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
        "map": list(class_map or []),
        "map_file": str(map_file) if map_file else None,
    }
    report = common.run("custom", options)
    _print_class_table(report.path, to_stderr=common.json_out == "-")
    if report.check is not None:
        from refine_cli.data.format.check import class_balance_notes

        check = report.check
        for note in class_balance_notes(check.classes, check.class_pixels, check.class_images):
            warn(note)


def _print_class_table(dataset: Path, to_stderr: bool = False) -> None:
    """The dataset's final classes (after --map): index, name and viewing colour, as meta.json records them.

    On stderr when the JSON report goes to stdout (`--json -`), so that stays parseable.
    """
    import json

    from rich.table import Table
    from rich.text import Text

    from refine_cli.cli._console import err, out

    try:
        meta = json.loads((dataset / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no complete dataset: the check's problems were reported
    table = Table(title="classes")
    for column in ("index", "name", "colour"):
        table.add_column(column)
    for index, (name, colour) in enumerate(zip(meta["classes"], meta["palette"], strict=False)):
        swatch = Text.assemble(("\u2588\u2588", f"rgb({colour[0]},{colour[1]},{colour[2]})"), f" {tuple(colour)}")
        table.add_row(str(index), name, swatch)
    mapping = meta.get("extra", {}).get("class_map")
    if mapping:
        table.caption = "--map: " + ", ".join(f"{old}={new}" for old, new in mapping.items())
    (err if to_stderr else out).print(table)


def register(prepare_app: typer.Typer) -> None:
    """Attach `custom` to the `refine prepare` sub-app."""
    prepare_command(prepare_app, "custom", local=True, epilog=_EPILOG)(custom_command)
