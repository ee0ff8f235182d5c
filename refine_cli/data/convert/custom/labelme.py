"""LabelMe JSON (a folder of `*.json`, one per image) -> labels exactly as labelme's own `labelme2voc` draws them.

labelme2voc rasterises each shape with Pillow (`labelme.utils.shape_to_mask`: fill AND outline) and
paints the shapes in file order, later ones on top: polygon and oriented_rectangle as polygons,
rectangle from its two corners, circle from centre and a point on it, line and linestrip 10 px wide,
point as a radius-5 disc, mask as a PNG patch placed at its box's integer top-left corner. refine draws
the same calls on one canvas (same pixels, one pass). The image is labelme's: the embedded `imageData`
when present, otherwise the file `imagePath` names (relative to the JSON, inside the export) with its
EXIF orientation applied, as labelme shows it. `__ignore__` shapes are 255, `_background_` shapes class 0.
Subfolders `train/`, `val/`, `test/` become splits.
"""

from __future__ import annotations

import base64
import binascii
import math
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.convert.base import ConvertedSample, SampleError
from refine_cli.data.convert.custom.class_files import ClassList
from refine_cli.data.convert.custom.class_map import ClassValues
from refine_cli.data.convert.custom.export_paths import OutsideExport, inside_export
from refine_cli.data.convert.custom.geometry import BadPoints, clip_box, clip_polygon, clip_segments, points_array
from refine_cli.data.convert.custom.images import image_bytes, image_file
from refine_cli.data.convert.custom.json_shapes import check_shape, read_json
from refine_cli.data.convert.custom.layout import safe_id
from refine_cli.data.convert.custom.source import LabelUse, SourceScan, classes_for, split_of
from refine_cli.data.format import imageio
from refine_cli.errors import RefineError

LINE_WIDTH = 10  # labelme.utils.shape_to_mask's defaults
POINT_SIZE = 5
POINTS_NEEDED = {  # shape type -> (fewest, most) points labelme accepts
    "polygon": (3, None), "rectangle": (2, 2), "circle": (2, 2), "line": (2, 2), "linestrip": (2, None),
    "point": (1, 1), "oriented_rectangle": (4, 4), "mask": (2, 2),
}  # fmt: skip
SCHEMA = {
    "type": "object",
    "required": ["shapes"],
    "properties": {
        "shapes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["label", "points"],
                "properties": {
                    "label": {"type": "string"},
                    "points": {"type": "array", "items": {"type": "array"}},  # numbers: points_array, faster
                    "shape_type": {"type": ["string", "null"]},
                    "mask": {"type": ["string", "null"]},
                },
            },
        },
        "imagePath": {"type": ["string", "null"]},
        "imageData": {"type": ["string", "null"]},
        "imageHeight": {"type": ["integer", "null"], "minimum": 1},
        "imageWidth": {"type": ["integer", "null"], "minimum": 1},
    },
}


def is_labelme(doc: Any) -> bool:
    return isinstance(doc, dict) and "shapes" in doc and ("imagePath" in doc or "imageData" in doc)


def read_labelme(path: Path) -> dict[str, Any]:
    """A labelme file, its shape checked (RefineError naming the file and field) and every shape's points."""
    doc = read_json(path, "labelme file")
    check_shape(doc, SCHEMA, f"labelme file {path}")
    for number, shape in enumerate(doc["shapes"]):
        kind = shape.get("shape_type") or "polygon"
        where = f"{path}: shape {number} ({kind} {shape['label']!r})"
        if kind not in POINTS_NEEDED:
            raise RefineError(f"{where} has a shape type labelme does not draw", hint=", ".join(POINTS_NEEDED))
        fewest, most = POINTS_NEEDED[kind]
        count = len(shape["points"])
        if count < fewest or (most is not None and count > most):
            needs = f"{fewest}" if fewest == most else f"at least {fewest}"
            raise RefineError(f"{where} has {count} point(s); a {kind} needs {needs}")
        if kind == "mask" and not shape.get("mask"):
            raise RefineError(f"{where} has no mask PNG")
        try:
            points_array(shape["points"], where)
        except BadPoints as error:
            raise RefineError(str(error)) from None
    if not doc.get("imageData") and not doc.get("imagePath"):
        raise RefineError(f"labelme file {path} names no image (no imagePath, no imageData)")
    return doc


def scan_labelme(root: Path, given: ClassList | None, unknown_as_ignore: bool) -> SourceScan:
    """Every labelme JSON under `root`: labels, images, splits; problems listed per file."""
    problems: list[tuple[str, str]] = []
    samples: list[tuple[str, tuple[Any, ...]]] = []
    splits: dict[str, list[str]] = {}
    owners: dict[str, Path] = {}
    used = LabelUse()
    files: list[Path] = []
    for path in sorted(p for p in root.rglob("*.json") if p.is_file() and not p.name.startswith(".")):
        sample_id = safe_id(path.stem)
        if sample_id in owners:
            problems.append((sample_id, f"{path} and {owners[sample_id]} are two files for one image name"))
            continue
        owners[sample_id] = path
        try:
            doc = read_labelme(path)
            image = None if doc.get("imageData") else _image_path(root, path, str(doc["imagePath"]))
        except RefineError as error:
            problems.append((sample_id, error.one_line()))
            continue
        for shape in doc["shapes"]:
            used.add(shape["label"], path.name)
        files += [path] + ([image] if image else [])
        samples.append((sample_id, ("labelme", str(path), str(root))))
        splits.setdefault(split_of(path.relative_to(root)) or "all", []).append(sample_id)
    classes, notes = classes_for(used, given, unknown_as_ignore, "labelme")
    kept_splits = None if set(splits) <= {"all"} else splits
    return SourceScan("labelme", classes, samples, kept_splits, files, problems, notes=notes,
                      background_by_construction=given is None)  # fmt: skip


def _image_path(root: Path, json_path: Path, named: str) -> Path:
    try:
        image = inside_export(root, json_path.parent, named, f"{json_path}: imagePath")
    except OutsideExport as error:
        raise RefineError(
            error.message, hint="or embed the image in the JSON (labelme: Save With Image Data)"
        ) from None
    if not image.is_file():
        raise RefineError(f"{json_path}: imagePath {named!r} is not a file ({image})")
    return image


def convert_labelme(args: tuple[Any, ...]) -> ConvertedSample:
    """Draw one labelme file (a worker): the image as labelme loads it, the shapes in file order."""
    json_path, root, values = Path(args[0]), Path(args[1]), args[2]
    try:
        doc = read_labelme(json_path)
        if doc.get("imageData"):
            data = _b64(doc["imageData"], f"{json_path}: imageData")
            (height, width), image = image_bytes(data, f"{json_path} imageData")
        else:
            (height, width), image = image_file(_image_path(root, json_path, str(doc["imagePath"])), oriented=True)
    except RefineError as error:
        raise SampleError(error.one_line()) from None
    declared = (doc.get("imageHeight"), doc.get("imageWidth"))
    if None not in declared and declared != (height, width):
        raise SampleError(
            f"{json_path}: imageHeight/imageWidth say {declared[1]}x{declared[0]} but the image is {width}x{height}"
        )
    return ConvertedSample(label=draw_shapes(doc["shapes"], height, width, values, json_path), **image)


def _b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise SampleError(f"{where} is not base64") from None


def draw_shapes(shapes: list[dict[str, Any]], height: int, width: int, values: ClassValues, where: Path) -> np.ndarray:
    """The label of labelme's shapes: each drawn with fill and outline in its class value, in order."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (width, height), values.background)
    draw = ImageDraw.Draw(canvas)
    for number, shape in enumerate(shapes):
        value = values.of_name(shape["label"])
        kind = shape.get("shape_type") or "polygon"
        what = f"{where}: shape {number} ({kind} {shape['label']!r})"
        if value < 0:
            raise SampleError(f"{what}: the label is in no class")
        points = points_array(shape["points"], what)
        if kind == "mask":
            _paste_mask(canvas, shape["mask"], points, value, what)
        elif kind in ("circle", "point"):
            radius = POINT_SIZE if kind == "point" else math.dist(points[0], points[1])
            _check_disc(points[0], radius, height, width, what)
            (cx, cy) = shape["points"][0]
            draw.ellipse(((cx - radius, cy - radius), (cx + radius, cy + radius)), outline=value, fill=value)
        elif kind == "rectangle":
            x0, y0, x1, y1 = clip_box(height, width)
            (ax, ay), (bx, by) = np.clip(points, (x0, y0), (x1, y1)).tolist()
            draw.rectangle(((min(ax, bx), min(ay, by)), (max(ax, bx), max(ay, by))), outline=value, fill=value)
        elif kind in ("line", "linestrip"):
            for piece in clip_segments(points, height, width):
                xy = [tuple(p) for p in shape["points"]] if piece is points else [tuple(p) for p in piece.tolist()]
                draw.line(xy, fill=value, width=LINE_WIDTH)
        else:  # polygon, oriented_rectangle
            clipped = clip_polygon(points, height, width)
            xy = [tuple(p) for p in shape["points"]] if clipped is points else [tuple(p) for p in clipped.tolist()]
            if len(xy) >= 2:
                draw.polygon(xy, outline=value, fill=value)
    return np.asarray(canvas, dtype=np.uint8).copy()


def _check_disc(centre: np.ndarray, radius: float, height: int, width: int, what: str) -> None:
    """Pillow's ellipse walks its whole outline: a circle a million pixels wide takes minutes. Refuse absurd ones."""
    limit = 16 * max(height, width) + 1024
    if radius > limit or abs(centre[0]) > limit + width or abs(centre[1]) > limit + height:
        raise SampleError(f"{what}: a circle of radius {radius:.0f} px around ({centre[0]:g}, {centre[1]:g}) "
                          f"is absurd for a {width}x{height} image")  # fmt: skip


def _paste_mask(canvas: Any, encoded: str, points: np.ndarray, value: int, what: str) -> None:
    """labelme's `mask[y1:y2+1, x1:x2+1] = patch` with the box corners truncated to integers, clipped to the image."""
    from PIL import Image

    try:
        patch = imageio.read_mask(_b64(encoded, f"{what}: mask"), what=f"{what}: mask")
    except imageio.ImageReadError as error:
        raise SampleError(error.one_line()) from None
    if patch.ndim != 2:
        raise SampleError(f"{what}: the mask PNG has colours; labelme writes a single-channel 0/1 PNG")
    (x1, y1), (x2, y2) = points.astype(np.int64).tolist()
    if patch.shape != (y2 - y1 + 1, x2 - x1 + 1):
        raise SampleError(
            f"{what}: the mask PNG is {patch.shape[1]}x{patch.shape[0]} but its box is {x2 - x1 + 1}x{y2 - y1 + 1}"
        )
    stencil = Image.fromarray(np.where(patch != 0, 255, 0).astype(np.uint8), "L")
    canvas.paste(value, (x1, y1, x2 + 1, y2 + 1), stencil)
