"""PASCAL-Person-Part -> unified `person-part`: 7 classes (0 = background), 255 = ignore.

Annotations come from Chen et al.'s `pascal_person_part.zip` (label PNGs + split lists, no images);
images from the VOC 2010 trainval tar. Two class orders are in circulation (docs/dataset-facts.md section 5):

* `deeplab` (the zip, DeepLab, RefineNet `gen_class_info_person_parts.m`): 1 head, 2 torso,
  3 upper arms, 4 lower arms, 5 upper legs, 6 lower legs. This is our output order.
* `parsing-rcnn` (the instance-level "PASCAL-Person-Part parsing" release): 1 lower-arm, 2 head,
  3 upper-leg, 4 torso, 5 lower-leg, 6 upper-arm. Labels in that order are remapped through a
  lookup table, so a model trained on one never silently meets the other.

Labels are read as palette indices (PIL 'P', never colours); an 'RGB' rendering is decoded
through the VOC colour map, and any colour or value outside the 7 classes + 255 is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.class_tables import voc_palette
from refine_cli.data.convert.base import ConvertedSample, Converter, DatasetSpec, Plan, SampleError, WorkItem
from refine_cli.data.convert.checks import check_same_size, image_size, read_id_list
from refine_cli.data.convert.datasets.voc2010 import find_folder, find_voc2010
from refine_cli.data.convert.registry import register_converter
from refine_cli.data.format.imageio import ImageReadError, read_mask
from refine_cli.errors import RefineError

PERSON_PART_CLASSES: list[str] = [
    "background",
    "head",
    "torso",
    "upper arms",
    "lower arms",
    "upper legs",
    "lower legs",
]
NUM_CLASSES = len(PERSON_PART_CLASSES)
ZIP_DIR = "pascal_person_part"
LABEL_DIR = "pascal_person_part_gt"
LIST_DIR = "pascal_person_part_trainval_list"
SPLITS = ("train", "val")

# Source value -> our class, per source order. 255 (void) stays 255; anything else is invalid.
LABEL_ORDERS: dict[str, dict[int, int]] = {
    "deeplab": {value: value for value in range(NUM_CLASSES)},
    "parsing-rcnn": {0: 0, 1: 4, 2: 1, 3: 5, 4: 2, 5: 6, 6: 3},
}
_INVALID = 254  # LUT marker for "not a valid source value"; 254 is never a class here


def person_part_lut(order: str) -> np.ndarray:
    """256-entry lookup table source value -> unified class for a source class order."""
    if order not in LABEL_ORDERS:
        raise RefineError(f"unknown Person-Part label order {order!r}", hint=f"use one of: {', '.join(LABEL_ORDERS)}")
    lut = np.full(256, _INVALID, dtype=np.uint8)
    for source, target in LABEL_ORDERS[order].items():
        lut[source] = target
    lut[255] = 255
    return lut


def _split_ids(list_dir: Path, split: str) -> list[str]:
    """Ids of a split: `<split>_id.txt` if present, else the DeepLab list (`/JPEGImages/<id>.jpg /Segm...`)."""
    bare = list_dir / f"{split}_id.txt"
    if bare.is_file():
        return read_id_list(bare)
    return read_id_list(list_dir / f"{split}.txt", to_id=lambda entry: Path(entry).stem)


@register_converter
class PersonPartConverter(Converter):
    """Person-Part train (1,716) / val (1,817) with VOC 2010 JPEGs copied unchanged."""

    name = "person-part"
    manifest = "person-part"
    version = "1"

    sources = ("voc2010", "annotations")

    def plan(self, sources: dict[str, Path], options: dict[str, Any]) -> Plan:
        order = str(options.get("label_order") or "deeplab")
        lut = person_part_lut(order)
        voc = find_voc2010(Path(sources["voc2010"]))
        base = find_folder(Path(sources["annotations"]), lambda p: (p / LABEL_DIR).is_dir() and (p / LIST_DIR).is_dir())
        if base is None:
            raise RefineError(
                f"{sources['annotations']} does not contain {ZIP_DIR}/{LABEL_DIR} and {ZIP_DIR}/{LIST_DIR}",
                hint="pass the pascal_person_part.zip from liangchiehchen.com (it has labels and lists, no images)",
            )
        label_dir, list_dir = base / LABEL_DIR, base / LIST_DIR
        splits = {split: _split_ids(list_dir, split) for split in SPLITS}
        overlap = sorted(set(splits["train"]) & set(splits["val"]))
        if overlap:
            raise RefineError(
                f"{len(overlap)} ids are in both train and val lists of {list_dir} (e.g. {overlap[0]})",
                hint="the zip is not the official release; download it again",
            )
        items = [
            WorkItem(
                sample_id, (str(voc / "JPEGImages" / f"{sample_id}.jpg"), str(label_dir / f"{sample_id}.png"), lut)
            )
            for split in SPLITS
            for sample_id in splits[split]
        ]
        spec = DatasetSpec(
            name="person-part",
            classes=list(PERSON_PART_CLASSES),
            palette=voc_palette(NUM_CLASSES),
            extra={
                "source_label_order": order,
                "source_label_mapping": {str(k): v for k, v in LABEL_ORDERS[order].items()} | {"255": 255},
                "images": "VOC 2010 VOCdevkit/VOC2010/JPEGImages",
            },
        )
        return Plan(spec=spec, splits=splits, items=items)

    @staticmethod
    def convert(item: WorkItem) -> ConvertedSample:
        image_path, label_path, lut = Path(item.args[0]), Path(item.args[1]), item.args[2]
        raw = read_part_label(label_path)
        mapped = lut[raw]
        if (mapped == _INVALID).any():
            bad = sorted(int(v) for v in np.unique(raw[mapped == _INVALID]))[:5]
            raise SampleError(
                f"label {label_path} has values {bad}; Person-Part labels hold 0..{NUM_CLASSES - 1} and 255"
            )
        check_same_size(mapped.shape, image_path, image_size(image_path), f"label {label_path}")
        return ConvertedSample(label=mapped, image_src=image_path)


def read_part_label(path: Path) -> np.ndarray:
    """Source label values of a Person-Part PNG: indices of 'P'/'L' images, VOC colours of 'RGB' ones."""
    try:
        mask = read_mask(path)
    except ImageReadError as error:
        raise SampleError(error.one_line()) from None
    if mask.ndim == 3:
        return _decode_voc_colours(mask, path)
    if mask.dtype != np.uint8:
        raise SampleError(f"label {path} is a 16-bit image, expected palette indices ('P') or VOC colours")
    return mask


def _decode_voc_colours(rgb: np.ndarray, path: Path) -> np.ndarray:
    """Map a VOC-colour rendering back to indices; a colour outside the 7 classes + void is an error."""
    palette = voc_palette(256)
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    out = np.full(codes.shape, _INVALID, dtype=np.uint8)
    for index in [*range(NUM_CLASSES), 255]:
        r, g, b = palette[index]
        out[codes == ((r << 16) | (g << 8) | b)] = index
    if (out == _INVALID).any():
        y, x = (int(v[0]) for v in np.nonzero(out == _INVALID))
        raise SampleError(
            f"label {path} has colour {tuple(int(c) for c in rgb[y, x])} at ({x},{y}), not a class colour"
        )
    return out
