"""ADE20K SceneParsing (ADEChallengeData2016) -> unified `ade20k`: 150 classes, 255 = ignore.

The source masks hold 0 = "other objects" (not evaluated) and 1..150 = classes. We map 0 -> 255 and
k -> k-1 through one 256-entry lookup table, so there is no uint8 underflow and no chance of the
"reduce_zero_label applied twice or never" bugs other tools had (mmseg #932, #1714, PR #2504):
training and evaluation never need a flag. JPEGs are copied unchanged (a few are grayscale; the
unified reader expands them to RGB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.class_tables import voc_palette
from refine_cli.data.convert.base import (
    ConvertedSample,
    Converter,
    DatasetSpec,
    Plan,
    SampleError,
    WorkItem,
)
from refine_cli.data.convert.checks import check_same_size, checked_image_size, read_index_png
from refine_cli.data.convert.registry import register_converter
from refine_cli.errors import RefineError

ROOT_DIR = "ADEChallengeData2016"
# Source folder -> unified split name; sizes 20,210 / 2,000 (sceneparsing README).
SPLIT_FOLDERS = {"training": "train", "validation": "val"}
NUM_SOURCE_CLASSES = 150

# Index order after zero-reduction, mmseg's short names (docs/dataset-facts.md appendix D; mmseg's 'bed ' trailing
# space dropped).
ADE20K_CLASSES: list[str] = (
    "wall building sky floor tree ceiling road bed windowpane grass cabinet sidewalk person earth door table "
    "mountain plant curtain chair car water painting sofa shelf house sea mirror rug field armchair seat fence "
    "desk rock wardrobe lamp bathtub railing cushion base box column signboard chest_of_drawers counter sand "
    "sink skyscraper fireplace refrigerator grandstand path stairs runway case pool_table pillow screen_door "
    "stairway river bridge bookcase blind coffee_table toilet flower book hill bench countertop stove palm "
    "kitchen_island computer swivel_chair boat bar arcade_machine hovel bus towel light truck tower chandelier "
    "awning streetlight booth television_receiver airplane dirt_track apparel pole land bannister escalator "
    "ottoman bottle buffet poster stage van ship fountain conveyer_belt canopy washer plaything swimming_pool "
    "stool barrel basket waterfall tent bag minibike cradle oven ball food step tank trade_name microwave pot "
    "animal bicycle lake dishwasher screen blanket sculpture hood sconce vase traffic_light tray ashcan fan pier "
    "crt_screen plate monitor bulletin_board shower radiator glass clock flag"
).split()
ADE20K_CLASSES = [name.replace("_", " ") for name in ADE20K_CLASSES]
assert len(ADE20K_CLASSES) == NUM_SOURCE_CLASSES


def ade20k_lut() -> np.ndarray:
    """Source value -> unified class: 0 -> 255, 1..150 -> 0..149; 151..255 are invalid and stay 255."""
    lut = np.full(256, 255, dtype=np.uint8)
    lut[1 : NUM_SOURCE_CLASSES + 1] = np.arange(NUM_SOURCE_CLASSES, dtype=np.uint8)
    return lut


def find_root(extracted: Path) -> Path:
    """The ADEChallengeData2016 folder inside an extracted archive (or the folder itself)."""
    for candidate in (extracted / ROOT_DIR, extracted):
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    raise RefineError(
        f"{extracted} does not contain {ROOT_DIR}/images and {ROOT_DIR}/annotations",
        hint="pass the official ADEChallengeData2016.zip (not the full ADE20K release, which has RGB masks)",
    )


@register_converter
class ADE20KConverter(Converter):
    """MIT SceneParsing benchmark: training -> train (20,210), validation -> val (2,000)."""

    name = "ade20k"
    manifest = "ade20k"
    version = "1"

    sources = ("trainval",)

    def plan(self, sources: dict[str, Path], options: dict[str, Any]) -> Plan:
        root = find_root(Path(sources["trainval"]))
        splits: dict[str, list[str]] = {}
        items: list[WorkItem] = []
        for folder, split in SPLIT_FOLDERS.items():
            image_dir = root / "images" / folder
            label_dir = root / "annotations" / folder
            if not image_dir.is_dir():
                raise RefineError(f"missing folder {image_dir}", hint="the archive is incomplete; download it again")
            ids: list[str] = []
            for image in sorted(image_dir.glob("*.jpg")):
                ids.append(image.stem)
                items.append(WorkItem(image.stem, (str(image), str(label_dir / f"{image.stem}.png"))))
            if not ids:
                raise RefineError(f"no *.jpg images in {image_dir}", hint="the archive is incomplete")
            splits[split] = ids
        spec = DatasetSpec(
            name="ade20k",
            classes=list(ADE20K_CLASSES),
            palette=voc_palette(NUM_SOURCE_CLASSES),
            extra={
                "source_label_mapping": "0 (other objects) -> 255; k -> k-1 for k in 1..150",
                "source_splits": {"train": "training", "val": "validation"},
            },
        )
        return Plan(spec=spec, splits=splits, items=items)

    @staticmethod
    def convert(item: WorkItem) -> ConvertedSample:
        image_path, label_path = (Path(p) for p in item.args)
        label = read_index_png(label_path)
        check_same_size(label.shape, image_path, checked_image_size(image_path), f"label {label_path}")
        if int(label.max(initial=0)) > NUM_SOURCE_CLASSES:
            bad = sorted(int(v) for v in np.unique(label[label > NUM_SOURCE_CLASSES]))[:5]
            raise SampleError(f"label {label_path} has values {bad} outside 0..{NUM_SOURCE_CLASSES}")
        return ConvertedSample(label=ade20k_lut()[label], image_src=image_path)
