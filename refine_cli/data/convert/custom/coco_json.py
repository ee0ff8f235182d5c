"""COCO-format JSON of own data (CVAT, Label Studio, Roboflow, makesense.ai exports) -> samples to rasterise.

Any category ids and names; class 0 is `background` (the pixels no annotation covers). Each JSON file is
a source split (`instances_train.json` -> train, CVAT's `instances_default.json` -> default, Roboflow's
`train/_annotations.coco.json` -> train). The rasterising rules are those of `refine prepare coco`
(datasets/coco.py): polygons, RLE and compressed RLE through pycocotools, crowd regions 255, pixels
claimed by two different classes 255. Images without annotations are skipped unless `keep_empty`.
The file's shape is checked first (one line naming the field); a `file_name` that leaves the folder it
is looked up in is refused; two images with one id, whose annotations cannot be told apart, are refused;
polygons of fewer than 3 points (which pycocotools would read as boxes) are not drawn, with a note.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from refine_cli.data.convert.custom.class_files import ClassList, make_class_list
from refine_cli.data.convert.custom.export_paths import OutsideExport, as_posix, inside_export
from refine_cli.data.convert.custom.json_shapes import check_shape, read_json
from refine_cli.data.convert.custom.layout import safe_id
from refine_cli.data.convert.custom.source import SourceScan
from refine_cli.errors import RefineError

_ID = {"type": ["integer", "string"]}
_RLE = {
    "type": "object",
    "required": ["counts", "size"],
    "properties": {
        "counts": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}}]},
        "size": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "integer", "minimum": 0}},
    },
}
_IMAGE = {
    "type": "object",
    "required": ["id", "file_name"],
    "properties": {
        "id": _ID,
        "file_name": {"type": "string"},
        "height": {"type": ["integer", "null"], "minimum": 0},
        "width": {"type": ["integer", "null"], "minimum": 0},
    },
}
_POLYGONS = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
_ANNOTATION = {
    "type": "object",
    "required": ["image_id", "category_id"],
    "properties": {
        "image_id": _ID,
        "category_id": {"type": "integer"},
        "iscrowd": {"type": ["integer", "boolean"]},
        "segmentation": {"oneOf": [_RLE, _POLYGONS, {"type": "null"}]},
    },
}
_CATEGORY = {
    "type": "object",
    "required": ["id", "name"],
    "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
}
SCHEMA = {
    "type": "object",
    "required": ["images", "annotations", "categories"],
    "properties": {
        "images": {"type": "array", "items": _IMAGE},
        "annotations": {"type": "array", "items": _ANNOTATION},
        "categories": {"type": "array", "minItems": 1, "items": _CATEGORY},
    },
}


def _load(path: Path) -> dict[str, Any]:
    doc = read_json(path, "COCO file")
    if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
        raise RefineError(f"{path} is not a COCO file (no 'images' and 'annotations' lists)")
    if not doc.get("categories"):
        raise RefineError(f"{path} has no 'categories' list", hint="export with the label definitions (COCO 1.0)")
    check_shape(doc, SCHEMA, f"COCO file {path}")
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
    for _, doc in docs:
        for category in doc["categories"]:
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
    """The image file of a record (by its path, else its name, in each folder images may be in).

    OutsideExport when the name climbs out of those folders or is an absolute path outside all of them.
    """
    bases = [images_dir] if images_dir else [json_path.parent, json_path.parent / "images",
                                              json_path.parent.parent / "images", json_path.parent.parent]  # fmt: skip
    refusal: OutsideExport | None = None
    for base in bases:
        try:
            named = inside_export(base, base, file_name, f"{json_path}: image file_name")
        except OutsideExport as error:
            refusal = refusal or error
            continue
        for candidate in (named, base / named.name):
            if candidate.is_file():
                return candidate, bases
    if refusal is not None:
        raise refusal
    return None, bases


def scan_coco(
    json_files: list[Path],
    images_dir: Path | None,
    given: ClassList | None,
    keep_empty: bool,
    crowd_as_class: bool = False,
) -> SourceScan:
    """Read every JSON; group the annotations per image; find each image file.

    `crowd_as_class` draws iscrowd=1 regions as their class instead of 255: CVAT's COCO 1.0 export
    marks every brush/mask annotation iscrowd=1, although each is one ordinary object.
    """
    docs = [(path, _load(path)) for path in json_files]
    classes, by_name = _categories(docs, given)
    scan = SourceScan("coco", classes, [], {}, list(json_files))
    owner: dict[str, Path] = {}
    counts: Counter[str] = Counter()
    for path, doc in docs:
        per_image = _group(path, doc, by_name, crowd_as_class, counts)
        seen = Counter(image["id"] for image in doc["images"])
        ids = scan.splits.setdefault(split_name(path), []) if scan.splits is not None else []
        for image in sorted(doc["images"], key=lambda record: str(record["file_name"])):
            file_name = image["file_name"]
            sample_id = safe_id(Path(as_posix(file_name)).stem)
            if sample_id in owner:
                scan.problems.append((sample_id, f"{path}: image {file_name} has the same name as one in "
                                                 f"{owner[sample_id]}"))  # fmt: skip
                continue
            owner[sample_id] = path
            if seen[image["id"]] > 1:
                why = f"{path}: {seen[image['id']]} images have the id {image['id']!r} ({file_name} is one)"
                scan.problems.append((sample_id, f"{why}, so their annotations cannot be told apart"))
                continue
            annotations = per_image.get(image["id"], [])
            if not annotations and not keep_empty:
                scan.skipped.append((sample_id, "no annotations (pass --keep-empty to keep such images as background)"))
                continue
            try:
                found, bases = _find_image(file_name, path, images_dir)
            except OutsideExport as error:
                scan.problems.append((sample_id, error.one_line()))
                continue
            if found is None:
                looked = ", ".join(str(base) for base in bases)
                scan.problems.append((sample_id, f"{path} lists image {file_name}, which is not in {looked}"))
                continue
            height, width = int(image.get("height") or 0), int(image.get("width") or 0)
            scan.samples.append((sample_id, ("coco", str(found), height, width, tuple(annotations))))
            scan.files.append(found)
            ids.append(sample_id)
    scan.notes = _notes(counts)
    return scan


def _group(
    path: Path, doc: dict[str, Any], by_name: dict[str, int], crowd_as_class: bool, counts: Counter[str]
) -> dict[Any, list[tuple[int, int, Any]]]:
    """image id -> [(class index, iscrowd, segmentation)]; boxes, crowds and degenerate polygons counted."""
    category_class = {int(c["id"]): by_name[c["name"]] for c in doc["categories"]}
    per_image: dict[Any, list[tuple[int, int, Any]]] = {}
    for ann in doc["annotations"]:
        if ann["category_id"] not in category_class:
            raise RefineError(f"{path}: annotation {ann.get('id')} has the unknown category {ann['category_id']}")
        segmentation = ann.get("segmentation")
        if isinstance(segmentation, list):
            counts["degenerate"] += sum(1 for polygon in segmentation if len(polygon) < 6 or len(polygon) % 2)
        if not segmentation:
            counts["boxes"] += 1
            continue
        crowd = bool(ann.get("iscrowd", 0)) and not crowd_as_class
        counts["crowds"] += crowd
        per_image.setdefault(ann["image_id"], []).append((category_class[ann["category_id"]], int(crowd), segmentation))
    return per_image


def _notes(counts: Counter[str]) -> list[str]:
    notes = []
    if counts["boxes"]:
        notes.append(f"{counts['boxes']} annotation(s) have no segmentation (boxes only) and are not drawn")
    if counts["degenerate"]:
        notes.append(f"{counts['degenerate']} polygon(s) have fewer than 3 points (or an odd number of coordinates) "
                     "and are not drawn")  # fmt: skip
    if counts["crowds"]:
        notes.append(
            f"{counts['crowds']} crowd annotation(s) (iscrowd=1) became ignore (255); CVAT's COCO export marks every "
            "mask iscrowd=1: if they are ordinary objects, prepare again with --crowd-as-class"
        )
    return notes
