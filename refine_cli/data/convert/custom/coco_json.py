"""COCO-format JSON of own data (CVAT, Label Studio, Roboflow, makesense.ai exports) -> samples to rasterise.

Any category ids and names; class 0 is `background` (the pixels no annotation covers). Each JSON file is
a source split (`instances_train.json` -> train, CVAT's `instances_default.json` -> default, Roboflow's
`train/_annotations.coco.json` -> train). The rasterising rules are those of `refine prepare coco`
(datasets/coco.py): polygons, RLE and compressed RLE through pycocotools, crowd regions 255, pixels
claimed by two different classes 255. Images without annotations are skipped unless `keep_empty`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refine_cli.data.convert.custom.class_files import ClassList, make_class_list
from refine_cli.data.convert.custom.layout import safe_id
from refine_cli.errors import RefineError


@dataclass
class CocoSample:
    """One image and its annotations as (class index, iscrowd, segmentation) triples."""

    sample_id: str
    image: Path
    height: int
    width: int
    annotations: tuple[tuple[int, int, Any], ...]


@dataclass
class CocoScan:
    samples: list[CocoSample]
    splits: dict[str, list[str]]
    classes: ClassList
    problems: list[tuple[str, str]]
    skipped: list[tuple[str, str]]
    notes: list[str]


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RefineError(f"cannot read {path}: {' '.join(str(error).split())}") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations")):
        raise RefineError(f"{path} is not a COCO file (no 'images' and 'annotations' lists)")
    if not isinstance(doc.get("categories"), list) or not doc["categories"]:
        raise RefineError(f"{path} has no 'categories' list", hint="export with the label definitions (COCO 1.0)")
    return doc


def split_name(path: Path) -> str:
    """instances_train.json -> train; Roboflow's <split>/_annotations.coco.json -> <split>."""
    stem = path.name[: -len(".json")]
    if stem.startswith("_annotations"):
        stem = path.parent.name
    for prefix in ("instances_", "annotations_"):
        stem = stem[len(prefix) :] if stem.startswith(prefix) else stem
    return {"valid": "val", "validation": "val"}.get(stem, stem)


def _categories(docs: list[tuple[Path, dict[str, Any]]], given: ClassList | None) -> tuple[ClassList, dict[str, int]]:
    """The class list (given, or background + the categories in id order) and name -> class index."""
    names: dict[str, int] = {}
    for path, doc in docs:
        for category in doc["categories"]:
            if not isinstance(category, dict) or not isinstance(category.get("name"), str) or "id" not in category:
                raise RefineError(f"{path}: category {category!r} has no id and name")
            names.setdefault(category["name"], int(category["id"]))
    if given is None:
        ordered = sorted(names, key=lambda name: names[name])
        entries = [(name, None) for name in ["background", *(n for n in ordered if n.lower() != "background")]]
        classes = make_class_list(entries, "the COCO categories")
    else:
        missing = sorted(set(names) - set(given.names))
        if missing:
            raise RefineError(
                f"the COCO categories {', '.join(missing[:8])} are not in the class file",
                hint="add them to --classes, or leave --classes out to take the JSON's categories",
            )
        if given.names[0].lower() != "background":
            raise RefineError("a COCO class list needs `background` (the pixels no annotation covers)",
                              hint="add a line `background` to the class file")  # fmt: skip
        classes = given
    return classes, {name: classes.names.index(name) for name in names}


def _find_image(file_name: str, json_path: Path, images_dir: Path | None) -> tuple[Path | None, list[Path]]:
    bases = [images_dir] if images_dir else [json_path.parent, json_path.parent / "images",
                                              json_path.parent.parent / "images", json_path.parent.parent]  # fmt: skip
    for base in bases:
        for candidate in (base / file_name, base / Path(file_name).name):
            if candidate.is_file():
                return candidate, bases
    return None, bases


def scan_coco(
    json_files: list[Path],
    images_dir: Path | None,
    given: ClassList | None,
    keep_empty: bool,
    crowd_as_class: bool = False,
) -> CocoScan:
    """Read every JSON; group the annotations per image; find each image file.

    `crowd_as_class` draws iscrowd=1 regions as their class instead of 255: CVAT's COCO 1.0 export
    marks every brush/mask annotation iscrowd=1, although each is one ordinary object.
    """
    docs = [(path, _load(path)) for path in json_files]
    classes, by_name = _categories(docs, given)
    samples: list[CocoSample] = []
    splits: dict[str, list[str]] = {}
    problems: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    owner: dict[str, Path] = {}
    boxes_only = crowds = 0
    for path, doc in docs:
        category_class = {int(c["id"]): by_name[c["name"]] for c in doc["categories"]}
        per_image: dict[Any, list[tuple[int, int, Any]]] = {}
        for ann in doc["annotations"]:
            if ann.get("category_id") not in category_class:
                raise RefineError(
                    f"{path}: annotation {ann.get('id')} has the unknown category {ann.get('category_id')}"
                )  # noqa: E501
            if not ann.get("segmentation"):
                boxes_only += 1
                continue
            crowd = bool(ann.get("iscrowd", 0)) and not crowd_as_class
            crowds += crowd
            per_image.setdefault(ann.get("image_id"), []).append(
                (category_class[ann["category_id"]], int(crowd), ann["segmentation"])
            )
        ids = splits.setdefault(split_name(path), [])
        for image in sorted(doc["images"], key=lambda record: str(record.get("file_name"))):
            file_name = str(image.get("file_name", ""))
            sample_id = safe_id(Path(file_name).stem)
            if sample_id in owner:
                problems.append(
                    (sample_id, f"{path}: image {file_name} has the same name as one in {owner[sample_id]}")
                )  # noqa: E501
                continue
            owner[sample_id] = path
            annotations = per_image.get(image.get("id"), [])
            if not annotations and not keep_empty:
                skipped.append((sample_id, "no annotations (pass --keep-empty to keep such images as background)"))
                continue
            found, bases = _find_image(file_name, path, images_dir)
            if found is None:
                looked = ", ".join(str(base) for base in bases)
                problems.append((sample_id, f"{path} lists image {file_name}, which is not in {looked}"))
                continue
            height, width = int(image.get("height") or 0), int(image.get("width") or 0)
            samples.append(CocoSample(sample_id, found, height, width, tuple(annotations)))
            ids.append(sample_id)
    notes = [f"{boxes_only} annotation(s) have no segmentation (boxes only) and are not drawn"] if boxes_only else []
    if crowds:
        notes.append(
            f"{crowds} crowd annotation(s) (iscrowd=1) became ignore (255); CVAT's COCO export marks every mask "
            "iscrowd=1: if they are ordinary objects, prepare again with --crowd-as-class"
        )
    return CocoScan(samples, splits, classes, problems, skipped, notes)
