"""Cityscapes-style polygon JSON (`*_polygons.json`) -> labels as cityscapesScripts' json2labelImg draws them.

Each file has `imgHeight`, `imgWidth` and `objects` with `label` and `polygon` ([[x, y], ...]); objects
are drawn in file order with Pillow's polygon fill (no outline), later on top, and `deleted` ones are
skipped. A label `cargroup` that is no class is drawn as `car` when that is one (json2labelImg's rule).
The classes come from --classes; pixels no polygon covers are `background` when the class list has it,
otherwise ignore (255). Layouts: Cityscapes' own (`gtFine/<split>/<city>/<x>_gtFine_polygons.json` with
`leftImg8bit/<split>/<city>/<x>_leftImg8bit.png`, `gtCoarse` alike; the split folders become splits) or
one flat folder (`<x>_polygons.json` beside `<x>.png`, `.jpg`, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.convert.base import ConvertedSample, SampleError
from refine_cli.data.convert.custom.class_files import ClassList
from refine_cli.data.convert.custom.class_map import ClassValues
from refine_cli.data.convert.custom.geometry import BadPoints, clip_polygon, points_array
from refine_cli.data.convert.custom.images import image_file
from refine_cli.data.convert.custom.json_shapes import check_shape, number_pair_list, read_json
from refine_cli.data.convert.custom.layout import SPLIT_DIRS, safe_id
from refine_cli.data.convert.custom.source import LabelUse, SourceScan, classes_for, split_of
from refine_cli.data.format.imageio import IMAGE_SUFFIXES
from refine_cli.errors import RefineError

SUFFIX = "_polygons.json"
ANNOTATION_FOLDERS = ("gtFine", "gtCoarse")
SCHEMA = {
    "type": "object",
    "required": ["imgHeight", "imgWidth", "objects"],
    "properties": {
        "imgHeight": {"type": "integer", "minimum": 1},
        "imgWidth": {"type": "integer", "minimum": 1},
        "objects": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["label", "polygon"],
                "properties": {
                    "label": {"type": "string"},
                    "polygon": number_pair_list(),
                    "deleted": {"type": ["integer", "boolean", "null"]},
                },
            },
        },
    },
}


def polygon_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(f"*{SUFFIX}") if p.is_file() and not p.name.startswith("."))


def class_of(label: str, names: dict[str, int] | ClassList) -> str:
    """json2labelImg's rule: `persongroup` is drawn as `person` when it is no class itself."""
    known = names.names if isinstance(names, ClassList) else names
    if label not in known and label.endswith("group") and label[: -len("group")] in known:
        return label[: -len("group")]
    return label


def read_polygons_file(path: Path) -> dict[str, Any]:
    """A polygons file with its shape checked; RefineError naming the file and object for a broken one."""
    doc = read_json(path, "polygons file")
    check_shape(doc, SCHEMA, f"polygons file {path}")
    for number, obj in enumerate(doc["objects"]):
        if obj.get("deleted"):
            continue
        where = f"{path}: object {number} ({obj['label']!r})"
        try:
            points_array(obj["polygon"], where)
        except BadPoints as error:
            raise RefineError(str(error)) from None
        if len(obj["polygon"]) < 3:
            raise RefineError(f"{where} has {len(obj['polygon'])} point(s); a polygon needs at least 3")
    return doc


def _image_for(root: Path, path: Path) -> tuple[str, Path | None, str | None]:
    """(sample id, its image or None, its split or None) for a polygons file."""
    prefix = path.name[: -len(SUFFIX)]
    relative = path.relative_to(root)
    parts = relative.parts
    for folder in ANNOTATION_FOLDERS:
        if folder in parts[:-1] and prefix.endswith(f"_{folder}"):
            base = prefix[: -len(folder) - 1]
            at = parts.index(folder)
            image = root.joinpath(*parts[:at], "leftImg8bit", *parts[at + 1 : -1], f"{base}_leftImg8bit.png")
            split = SPLIT_DIRS.get(parts[at + 1].lower()) if len(parts) > at + 2 else None
            return safe_id(base), image if image.is_file() else None, split
    for ext in IMAGE_SUFFIXES:
        for candidate in (path.with_name(prefix + ext), path.with_name(prefix + ext.upper())):
            if candidate.is_file():
                return safe_id(prefix), candidate, split_of(relative)
    return safe_id(prefix), None, split_of(relative)


def scan_cityscapes(root: Path, given: ClassList | None, unknown_as_ignore: bool) -> SourceScan:
    """Every polygons file under `root` with its image; classes from --classes (required)."""
    used = LabelUse()
    docs = []
    problems: list[tuple[str, str]] = []
    for path in polygon_files(root):
        sample_id, image, split = _image_for(root, path)
        try:
            doc = read_polygons_file(path)
        except RefineError as error:
            problems.append((sample_id, error.one_line()))
            continue
        if image is None:
            problems.append((sample_id, f"{path} has no image beside it (or in leftImg8bit/)"))
            continue
        docs.append((sample_id, path, image, split))
        for obj in doc["objects"]:
            if not obj.get("deleted"):
                used.add(obj["label"] if given is None else class_of(obj["label"], given), path.name)
    if given is None:
        found = ", ".join(sorted(used.files)[:20])
        raise RefineError(f"Cityscapes-style polygons need --classes; these files use the labels {found}",
                          hint="write them one per line, `background` first if you have one")  # fmt: skip
    classes, notes = classes_for(used, given, unknown_as_ignore, "polygon")
    scan = SourceScan("cityscapes", classes, [], {}, [], problems, notes=notes, background_by_construction=False)
    owners: dict[str, Path] = {}
    for sample_id, path, image, split in docs:
        if sample_id in owners:
            problems.append((sample_id, f"{path} and {owners[sample_id]} are two files for one image name"))
            continue
        owners[sample_id] = path
        scan.samples.append((sample_id, ("cityscapes", str(path), str(image))))
        scan.files += [path, image]
        assert scan.splits is not None
        scan.splits.setdefault(split or "all", []).append(sample_id)
    if scan.splits is not None and set(scan.splits) <= {"all"}:
        scan.splits = None
    return scan


def convert_cityscapes(args: tuple[Any, ...]) -> ConvertedSample:
    """Draw one polygons file (a worker) on its image's stored pixel grid."""
    json_path, image_path, values = Path(args[0]), Path(args[1]), args[2]
    try:
        doc = read_polygons_file(json_path)
    except RefineError as error:
        raise SampleError(error.one_line()) from None
    (height, width), image = image_file(image_path)
    if (doc["imgHeight"], doc["imgWidth"]) != (height, width):
        raise SampleError(f"{json_path} is for a {doc['imgWidth']}x{doc['imgHeight']} image but {image_path} is "
                          f"{width}x{height}")  # fmt: skip
    return ConvertedSample(label=draw_objects(doc["objects"], height, width, values), **image)


def draw_objects(objects: list[dict[str, Any]], height: int, width: int, values: ClassValues) -> np.ndarray:
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (width, height), values.background)
    draw = ImageDraw.Draw(canvas)
    for obj in objects:
        if obj.get("deleted"):
            continue
        value = values.of_name(class_of(obj["label"], values.names))
        points = points_array(obj["polygon"], "polygon")
        clipped = clip_polygon(points, height, width)
        xy = [tuple(p) for p in obj["polygon"]] if clipped is points else [tuple(p) for p in clipped.tolist()]
        if value < 0:
            raise SampleError(f"polygon label {obj['label']!r} is in no class")
        if len(xy) >= 2:
            draw.polygon(xy, fill=value)
    return np.asarray(canvas, dtype=np.uint8).copy()
