"""MS COCO 2017 instances -> unified `coco-voc`: the 20 VOC categories rasterised, everything else background.

Rules (documented because the reference tools disagree, docs/dataset-facts.md section 3):
- categories are mapped by COCO category id (never list position) with torchvision's CAT_LIST;
- a pixel claimed by instances of two DIFFERENT VOC classes becomes 255 (same-class overlaps keep the
  class; torchvision marks every overlap, gluon-cv lets the first instance win);
- crowd (iscrowd=1) regions of VOC categories become 255: they hold many unlabelled instances;
- non-VOC objects are background, like in torchvision and gluon-cv;
- an image with fewer than `min_pixels` (1,000) VOC-class pixels after that is dropped and counted,
  in train and val alike (gluon-cv's rule, on the rasterised label rather than annotation areas).
Polygons and RLE go through pycocotools (`frPyObjects`, `merge`, `decode`). `plan()` groups the
annotations by image, so each work item carries only its own image's VOC annotations.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.convert.base import ConvertedSample, Converter, Plan, SampleError, SkipSample, WorkItem
from refine_cli.data.convert.checks import check_same_size, image_size
from refine_cli.data.convert.datasets.sbd import voc_family_spec
from refine_cli.data.convert.datasets.voc_family import COCO_TO_VOC, VOC_CLASSES
from refine_cli.data.convert.registry import register_converter
from refine_cli.data.format.unified import validate_sample_id
from refine_cli.errors import RefineError

SPLITS = ("train", "val")
MIN_VOC_PIXELS = 1000
# COCO's names for the mapped ids: a file whose category 62 is not "chair" is not COCO 2017 instances.
COCO_NAMES = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 9: "boat",
    16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 44: "bottle", 62: "chair",
    63: "couch", 64: "potted plant", 67: "dining table", 72: "tv",
}  # fmt: skip


def _find(folder: Path, *relative: str) -> Path | None:
    for candidate in relative:
        if (folder / candidate).exists():
            return folder / candidate
    return None


def load_instances(path: Path) -> dict[str, Any]:
    """Read an instances_*.json file; RefineError naming it when it is not COCO instances JSON."""
    try:
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RefineError(f"cannot read {path}: {error}", hint="download annotations_trainval2017.zip again") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations")):
        raise RefineError(f"{path} is not a COCO instances file (no 'images'/'annotations' lists)")
    for category in doc.get("categories", []):
        expected = COCO_NAMES.get(category.get("id"))
        if expected is not None and category.get("name") != expected:
            raise RefineError(
                f"{path}: category {category.get('id')} is {category.get('name')!r}, COCO 2017 calls it {expected!r}",
                hint="use the official COCO 2017 instances annotations",
            )
    return doc


def group_annotations(doc: dict[str, Any]) -> dict[int, list[tuple[int, int, Any]]]:
    """image id -> [(VOC class, iscrowd, segmentation)] for the VOC categories only (the rest is background)."""
    per_image: dict[int, list[tuple[int, int, Any]]] = defaultdict(list)
    for ann in doc["annotations"]:
        voc = COCO_TO_VOC.get(ann.get("category_id"))
        if voc is not None and ann.get("segmentation"):
            per_image[ann["image_id"]].append((voc, int(bool(ann.get("iscrowd", 0))), ann["segmentation"]))
    return per_image


def _check_polygon(polygon: list[Any], height: int, width: int) -> None:
    """pycocotools walks every polygon edge in 1/5-pixel steps: one vertex at 1e308 (or NaN) made it
    allocate until the kernel killed the process. Vertices must be numbers near the image."""
    reach = 2 * max(height, width) + 16  # CVAT polygons may overshoot the border a little
    for value in polygon:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -reach <= value <= reach:
            raise ValueError(f"polygon coordinate {value!r} is not a number near the {width}x{height} image")


def _string_counts(text: bytes) -> list[int]:
    """The run lengths of a compressed RLE string (pycocotools' rleFrString, in Python, to check them)."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise ValueError("compressed RLE counts end in the middle of a number")
            char = text[position] - 48
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            position, shift = position + 1, shift + 5
            if not more and char & 0x10:
                value |= -1 << shift
        counts.append(value + counts[-2] if len(counts) > 2 else value)
    return counts


def _check_counts(counts: list[Any], height: int, width: int) -> None:
    """pycocotools decodes runs without bounds checks: runs that add up to more than HxW write past the mask."""
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        raise ValueError("RLE counts must be non-negative whole numbers")
    if sum(counts) != height * width:
        raise ValueError(f"RLE counts add up to {sum(counts)} pixels, not the {width}x{height} = {height * width}")


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """An instance mask (HxW bool) from polygons, uncompressed RLE (crowd) or compressed RLE.

    Polygon vertices and RLE run lengths are checked first: pycocotools trusts them (ValueError if bad).
    """
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        # A "polygon" of fewer than 3 points would be read by pycocotools as a bounding box: drop it.
        polygons = [p for p in segmentation if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
        if not polygons:
            return np.zeros((height, width), dtype=bool)
        for polygon in polygons:
            _check_polygon(polygon, height, width)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(f"RLE size {segmentation['size']} differs from the image size {[height, width]}")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            _check_counts(counts, height, width)
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            text = counts.encode("ascii") if isinstance(counts, str) else counts
            if not isinstance(text, bytes):
                raise ValueError(f"RLE counts must be a list or a string, not {type(counts).__name__}")
            _check_counts(_string_counts(text), height, width)
            rle = {"size": [height, width], "counts": text}
    else:
        raise ValueError(f"unknown segmentation type {type(segmentation).__name__}")
    with warnings.catch_warnings():  # pycocotools' numpy-2 "copy keyword" DeprecationWarning, harmless
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def rasterize(annotations: list[tuple[int, int, Any]], height: int, width: int) -> np.ndarray:
    """The coco-voc label: VOC classes, different-class overlaps and VOC crowd regions 255, rest 0."""
    owner = np.zeros((height, width), dtype=np.uint8)
    conflict = np.zeros((height, width), dtype=bool)
    crowd = np.zeros((height, width), dtype=bool)
    for voc_class, iscrowd, segmentation in annotations:
        mask = decode_segmentation(segmentation, height, width)
        if iscrowd:
            crowd |= mask
            continue
        conflict |= mask & (owner != 0) & (owner != voc_class)
        owner[mask & (owner == 0)] = voc_class
    owner[conflict | crowd] = 255
    return owner


def _image_dir(folder: Path, split: str) -> Path:
    """`<extracted>/train2017` as the zip unpacks, or the folder itself when it already holds the JPEGs."""
    nested = folder / f"{split}2017"
    return nested if nested.is_dir() else folder


@register_converter
class COCOConverter(Converter):
    """COCO 2017 train/val instances -> 21-class VOC labels (`coco-voc`), the usual VOC pre-training set."""

    name = "coco"
    manifest = "coco"
    version = "1"

    sources = ("annotations", "train2017", "val2017")

    def plan(self, sources: dict[str, Path], options: dict[str, Any]) -> Plan:
        min_pixels = int(options.get("min_pixels", MIN_VOC_PIXELS))
        ann_root = Path(sources["annotations"])
        splits: dict[str, list[str]] = {}
        items: list[WorkItem] = []
        skipped: list[tuple[str, str]] = []
        seen: set[str] = set()
        for split in SPLITS:
            json_path = _find(ann_root, f"annotations/instances_{split}2017.json", f"instances_{split}2017.json")
            if json_path is None:
                raise RefineError(
                    f"{ann_root} has no annotations/instances_{split}2017.json",
                    hint="pass the official annotations_trainval2017.zip",
                )
            doc = load_instances(json_path)
            per_image = group_annotations(doc)
            image_dir = _image_dir(Path(sources[f"{split}2017"]), split)
            ids: list[str] = []
            for image in sorted(doc["images"], key=lambda record: record["file_name"]):
                sample_id = Path(image["file_name"]).stem
                try:
                    validate_sample_id(sample_id)
                except ValueError:
                    raise RefineError(f"{json_path}: image file name {image['file_name']!r} is not usable") from None
                if sample_id in seen:
                    raise RefineError(f"{json_path}: image {sample_id} appears twice (or in both splits)")
                seen.add(sample_id)
                annotations = per_image.get(image["id"], [])
                if not annotations:
                    skipped.append((sample_id, "no VOC-class objects"))
                    continue
                args = (str(image_dir / image["file_name"]), int(image["height"]), int(image["width"]))
                items.append(WorkItem(sample_id, (*args, tuple(annotations), min_pixels)))
                ids.append(sample_id)
            del doc, per_image  # the train JSON is ~450 MB: free it before reading the next one
            splits[split] = ids
        spec = voc_family_spec(
            "coco-voc",
            {
                "coco_to_voc": {str(k): v for k, v in sorted(COCO_TO_VOC.items())},
                "rules": "non-VOC categories -> 0; different-class overlaps -> 255; VOC crowd regions -> 255",
                "min_voc_pixels": min_pixels,
            },
        )
        return Plan(spec=spec, splits=splits, items=items, skipped=skipped)

    @staticmethod
    def convert(item: WorkItem) -> ConvertedSample:
        image_path, height, width, annotations, min_pixels = item.args
        image = Path(image_path)
        check_same_size((height, width), image, image_size(image), "its record in the annotations")
        try:
            label = rasterize(list(annotations), height, width)
        except (ValueError, TypeError, KeyError) as error:
            raise SampleError(f"bad segmentation for {image.name} in the annotations: {error}") from None
        voc_pixels = int(np.count_nonzero((label > 0) & (label < len(VOC_CLASSES))))
        if voc_pixels < min_pixels:
            raise SkipSample(f"{voc_pixels} VOC-class pixels (< {min_pixels})")
        return ConvertedSample(label=label, image_src=image)
