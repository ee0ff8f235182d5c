"""The class names and colours each public converter writes, by unified dataset name.

For models trained elsewhere on these datasets (the MATLAB RefineNet release, imported by `refine
convert --from matconvnet`): their checkpoints get exactly the table `refine prepare` gives the data,
so `refine eval` accepts them on it and predictions use the same colours.
"""

from __future__ import annotations

from refine_cli.class_tables import VOC_CLASSES, voc_palette
from refine_cli.errors import RefineError


def public_class_table(name: str) -> tuple[list[str], list[list[int]]]:
    """(class names, RGB colours) of the unified dataset `name` ('voc', 'ade20k', ...)."""
    from refine_cli.data.convert.datasets.ade20k import ADE20K_CLASSES
    from refine_cli.data.convert.datasets.cityscapes import CITYSCAPES_PALETTE, TRAIN_CLASSES
    from refine_cli.data.convert.datasets.context import CONTEXT60_CLASSES
    from refine_cli.data.convert.datasets.nyudv2 import NYU40_CLASSES
    from refine_cli.data.convert.datasets.person_part import PERSON_PART_CLASSES
    from refine_cli.data.convert.datasets.sunrgbd import SUNRGBD_CLASSES

    tables: dict[str, tuple[list[str], list[tuple[int, int, int]] | None]] = {
        "voc": (VOC_CLASSES, None),
        "cityscapes": (TRAIN_CLASSES, CITYSCAPES_PALETTE),
        "nyudv2": (NYU40_CLASSES, None),
        "person-part": (PERSON_PART_CLASSES, None),
        "context": (CONTEXT60_CLASSES, None),
        "sunrgbd": (SUNRGBD_CLASSES, None),
        "ade20k": (ADE20K_CLASSES, None),
    }
    if name not in tables:
        raise RefineError(f"no class table for dataset {name!r}", hint="known: " + ", ".join(tables))
    classes, palette = tables[name]
    colours = palette if palette is not None else voc_palette(len(classes))
    return list(classes), [list(rgb) for rgb in colours[: len(classes)]]
