"""Cityscapes fine annotations -> unified `cityscapes`: 19 trainIds, 255 = ignore; 2,975 / 500 / 1,525.

Labels come from `*_gtFine_labelIds.png` through the official labelId -> trainId table
(cityscapesScripts `helpers/labels.py`) as one 256-entry lookup table: no polygon rasteriser needed, and
any value outside 0..33 is reported instead of silently mapped. The images (PNG) are copied unchanged.

The test split's ground truth is a dummy (the real one lives on the evaluation server), so its labels are
written as all-255 maps: `refine predict` and submissions can use the split, and evaluating on it scores
nothing instead of something wrong. meta.json says so (`extra.unlabeled_splits`) and keeps the
trainId -> labelId table (`extra.train_id_to_label_id`) so predictions can be written back as labelIds
for the benchmark server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.convert.base import ConvertedSample, Converter, DatasetSpec, Plan, SampleError, WorkItem
from refine_cli.data.convert.checks import check_same_size, checked_image_size, read_index_png
from refine_cli.data.convert.registry import register_converter
from refine_cli.errors import RefineError

# (labelId, name, trainId) from cityscapesScripts helpers/labels.py (docs/dataset-facts.md appendix C).
# 'license plate' (id -1) is never drawn into labelIds images, so it has no entry.
CITYSCAPES_LABELS: list[tuple[int, str, int]] = [
    (0, "unlabeled", 255), (1, "ego vehicle", 255), (2, "rectification border", 255), (3, "out of roi", 255),
    (4, "static", 255), (5, "dynamic", 255), (6, "ground", 255), (7, "road", 0), (8, "sidewalk", 1),
    (9, "parking", 255), (10, "rail track", 255), (11, "building", 2), (12, "wall", 3), (13, "fence", 4),
    (14, "guard rail", 255), (15, "bridge", 255), (16, "tunnel", 255), (17, "pole", 5), (18, "polegroup", 255),
    (19, "traffic light", 6), (20, "traffic sign", 7), (21, "vegetation", 8), (22, "terrain", 9), (23, "sky", 10),
    (24, "person", 11), (25, "rider", 12), (26, "car", 13), (27, "truck", 14), (28, "bus", 15),
    (29, "caravan", 255), (30, "trailer", 255), (31, "train", 16), (32, "motorcycle", 17), (33, "bicycle", 18),
]  # fmt: skip
MAX_LABEL_ID = 33
TRAIN_CLASSES: list[str] = [name for _, name, train_id in CITYSCAPES_LABELS if train_id != 255]
TRAIN_ID_TO_LABEL_ID: list[int] = [label_id for label_id, _, train_id in CITYSCAPES_LABELS if train_id != 255]
# Train-id colours from labels.py, in trainId order.
CITYSCAPES_PALETTE: list[tuple[int, int, int]] = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
    (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]  # fmt: skip
SPLITS = ("train", "val", "test")
UNLABELED_SPLITS = ("test",)
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


def label_id_to_train_id_lut() -> np.ndarray:
    """labelId -> trainId (255 for void classes and for every value above 33)."""
    lut = np.full(256, 255, dtype=np.uint8)
    for label_id, _, train_id in CITYSCAPES_LABELS:
        lut[label_id] = train_id
    return lut


def train_ids_to_label_ids(prediction: np.ndarray) -> np.ndarray:
    """Turn a trainId map into labelIds for the Cityscapes benchmark server (255 -> 0 'unlabeled')."""
    lut = np.zeros(256, dtype=np.uint8)
    lut[: len(TRAIN_ID_TO_LABEL_ID)] = TRAIN_ID_TO_LABEL_ID
    return lut[prediction]


def _find_root(extracted: Path, folder: str) -> Path:
    """The `folder` (leftImg8bit or gtFine) inside an extracted archive, or the folder itself."""
    if (extracted / folder).is_dir():
        return extracted / folder
    if extracted.name == folder and extracted.is_dir():
        return extracted
    raise RefineError(
        f"{extracted} has no {folder}/ folder",
        hint=f"pass the official {folder}_trainvaltest.zip (from cityscapes-dataset.com)",
    )


@register_converter
class CityscapesConverter(Converter):
    """Cityscapes gtFine + leftImg8bit; splits train/val/test as in the official archives."""

    name = "cityscapes"
    manifest = "cityscapes"
    version = "1"

    sources = ("gtfine", "leftimg")

    def plan(self, sources: dict[str, Path], options: dict[str, Any]) -> Plan:
        images_root = _find_root(Path(sources["leftimg"]), "leftImg8bit")
        labels_root = _find_root(Path(sources["gtfine"]), "gtFine")
        splits: dict[str, list[str]] = {}
        items: list[WorkItem] = []
        for split in SPLITS:
            split_dir = images_root / split
            if not split_dir.is_dir():
                raise RefineError(f"missing folder {split_dir}", hint="the leftImg8bit archive is incomplete")
            ids: list[str] = []
            for image in sorted(split_dir.glob(f"*/*{IMAGE_SUFFIX}")):
                city = image.parent.name
                stem = image.name[: -len(IMAGE_SUFFIX)]
                label = None if split in UNLABELED_SPLITS else labels_root / split / city / f"{stem}{LABEL_SUFFIX}"
                ids.append(stem)
                items.append(WorkItem(stem, (str(image), str(label) if label else None)))
            if not ids:
                raise RefineError(f"no *{IMAGE_SUFFIX} images in {split_dir}", hint="the archive is incomplete")
            splits[split] = ids
        spec = DatasetSpec(
            name="cityscapes",
            classes=list(TRAIN_CLASSES),
            palette=list(CITYSCAPES_PALETTE),
            extra={
                "label_source": "gtFine labelIds mapped to trainIds (cityscapesScripts helpers/labels.py)",
                "train_id_to_label_id": list(TRAIN_ID_TO_LABEL_ID),
                "unlabeled_splits": list(UNLABELED_SPLITS),
                "unlabeled_note": "test ground truth is withheld by the benchmark; its labels are all 255 (ignore)",
            },
        )
        return Plan(spec=spec, splits=splits, items=items)

    @staticmethod
    def convert(item: WorkItem) -> ConvertedSample:
        image_path, label_path = item.args
        image_path = Path(image_path)
        height, width = checked_image_size(image_path)
        if label_path is None:
            return ConvertedSample(label=np.full((height, width), 255, dtype=np.uint8), image_src=image_path)
        label_path = Path(label_path)
        label = read_index_png(label_path)
        check_same_size(label.shape, image_path, (height, width), f"label {label_path}")
        if int(label.max(initial=0)) > MAX_LABEL_ID:
            bad = sorted(int(v) for v in np.unique(label[label > MAX_LABEL_ID]))[:5]
            raise SampleError(f"label {label_path} has values {bad} that are not Cityscapes labelIds (0..33)")
        return ConvertedSample(label=label_id_to_train_id_lut()[label], image_src=image_path)
