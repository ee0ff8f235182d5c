"""Label Studio's JSON export (`--from export.json --images MEDIA_DIR`) -> labels.

Per task, the latest annotation that was not cancelled is used (a `ground_truth` one first); tasks
without one are left out and counted. Regions: `brushlabels` (the editor's RLE, label_studio_rle.py),
`polygonlabels` (points in % of original_width/height), `rectanglelabels` (x, y, width, height in %,
turned by `rotation` degrees clockwise about the top-left corner) and `ellipselabels` (centre x, y and
radiusX, radiusY in %, turned about the centre). Percent becomes pixels as Label Studio's own COCO export
computes it (`x / 100 * width`); polygons and rectangles are filled by pycocotools as for COCO, ellipses
by pixel centre, brushes are the pixels whose alpha is not 0. Two different classes claiming a pixel: 255,
as for COCO. Image URLs `/data/upload/<project>/<file>`, `/data/local-files/?d=<path>` and plain URLs are
found under --images by path, else by file name; a path that leaves --images is refused.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from refine_cli.data.convert.base import ConvertedSample, SampleError
from refine_cli.data.convert.custom.class_files import ClassList
from refine_cli.data.convert.custom.export_paths import OutsideExport, files_by_name, inside_export
from refine_cli.data.convert.custom.geometry import BadPoints, clip_polygon, points_array
from refine_cli.data.convert.custom.images import image_file
from refine_cli.data.convert.custom.json_shapes import check_shape, number_pair_list, read_json
from refine_cli.data.convert.custom.label_studio_rle import BadRLE, brush_mask
from refine_cli.data.convert.custom.layout import safe_id
from refine_cli.data.convert.custom.source import LabelUse, SourceScan, classes_for, compose_exclusive
from refine_cli.data.format.imageio import IMAGE_SUFFIXES
from refine_cli.errors import RefineError

ABSURD_PERCENT = 1e6  # a rectangle or ellipse this far out (10,000 images away) is a broken file
_NUMBER = {"type": "number"}
_LABELS = {"type": "array", "minItems": 1, "items": {"type": "string"}}
VALUE_SCHEMAS = {
    "brushlabels": {"required": ["rle", "brushlabels"], "properties": {
        "format": {"enum": ["rle"]}, "rle": {"type": "array"}, "brushlabels": _LABELS}},
    "polygonlabels": {"required": ["points", "polygonlabels"], "properties": {
        "points": number_pair_list(), "polygonlabels": _LABELS}},
    "rectanglelabels": {"required": ["x", "y", "width", "height", "rectanglelabels"], "properties": {
        "x": _NUMBER, "y": _NUMBER, "width": _NUMBER, "height": _NUMBER, "rotation": _NUMBER,
        "rectanglelabels": _LABELS}},
    "ellipselabels": {"required": ["x", "y", "radiusX", "radiusY", "ellipselabels"], "properties": {
        "x": _NUMBER, "y": _NUMBER, "radiusX": _NUMBER, "radiusY": _NUMBER, "rotation": _NUMBER,
        "ellipselabels": _LABELS}},
}  # fmt: skip
_RESULT = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string"},
        "value": {"type": "object"},
        "original_width": {"type": "integer", "minimum": 1},
        "original_height": {"type": "integer", "minimum": 1},
    },
}
_ANNOTATION = {
    "type": "object",
    "properties": {
        "result": {"type": "array", "items": _RESULT},
        "was_cancelled": {"type": ["boolean", "null"]},
        "ground_truth": {"type": ["boolean", "null"]},
        "created_at": {"type": ["string", "null"]},
        "updated_at": {"type": ["string", "null"]},
    },
}
SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"type": "object"},
            "annotations": {"type": "array", "items": _ANNOTATION},
            "completions": {"type": "array", "items": _ANNOTATION},  # Label Studio before 1.0
        },
    },
}


def is_label_studio(doc: Any) -> bool:
    """A JSON export: a list of tasks with `data` and `annotations` (or the old `completions`)."""
    first = doc[0] if isinstance(doc, list) and doc else None
    return isinstance(first, dict) and "data" in first and ("annotations" in first or "completions" in first)


def chosen_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The annotation a task is trained on: not cancelled, a ground-truth one first, then the latest."""
    finished = [a for a in task.get("annotations", task.get("completions")) or [] if not a.get("was_cancelled")]
    if not finished:
        return None
    return max(finished, key=lambda a: (bool(a.get("ground_truth")), str(a.get("updated_at") or a.get("created_at")
                                        or ""), str(a.get("id", ""))))  # fmt: skip


def _image_url(task: dict[str, Any], where: str) -> str:
    data = task["data"]
    if isinstance(data.get("image"), str):
        return data["image"]
    urls = [v for v in data.values() if isinstance(v, str) and PurePosixPath(urlparse(v).path).suffix.lower()
            in IMAGE_SUFFIXES]  # fmt: skip
    if len(urls) != 1:
        raise RefineError(f"{where}: cannot tell which of its data fields ({', '.join(map(str, data))}) is the image")
    return urls[0]


def url_candidates(url: str) -> tuple[list[str], str]:
    """(paths relative to the media folder to try, the file name) for an image URL of a task."""
    parsed = urlparse(url)
    if parsed.path.startswith("/data/local-files/"):
        named = unquote(parse_qs(parsed.query).get("d", [""])[0])
        return [named], PurePosixPath(named).name
    path = unquote(parsed.path)
    if parsed.scheme or parsed.netloc:  # http(s)://, s3://, gs://: only the file name can be matched
        return [], PurePosixPath(path).name
    if path.startswith("/data/"):  # /data/upload/<project>/<file>: media/upload/<project>/<file>
        rest = path[len("/data/") :]
        return [rest, rest.partition("/")[2]], PurePosixPath(path).name
    return [path], PurePosixPath(path).name


class _Media:
    """Finds the image of a URL under --images: by path first, else by file name (one file of that name)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._by_name: dict[str, list[Path]] | None = None

    def find(self, url: str, where: str) -> Path:
        paths, name = url_candidates(url)
        for relative in paths:
            try:
                candidate = inside_export(self.folder, self.folder, relative, f"{where}: image {url!r}")
            except OutsideExport as error:
                raise RefineError(error.message, hint="an export may only name files inside --images") from None
            if candidate.is_file():
                return candidate
        if self._by_name is None:
            self._by_name = files_by_name(self.folder, IMAGE_SUFFIXES)
        found = self._by_name.get(name, [])
        if len(found) != 1:
            why = "no file" if not found else f"{len(found)} files ({found[0]}, {found[1]})"
            raise RefineError(
                f"{where}: image {url!r} matches {why} named {name!r} under {self.folder}",
                hint="pass --images with the folder of the task images (Label Studio's media folder)",
            )
        return found[0]


def _regions(annotation: dict[str, Any], where: str, used: LabelUse) -> tuple[list[tuple[str, str, dict]], Any, int]:
    """(regions as (label, type, value), (height, width) declared or None, results of other types)."""
    regions: list[tuple[str, str, dict]] = []
    sizes, others = set(), 0
    for number, result in enumerate(annotation.get("result") or []):
        kind = result["type"].lower()
        if kind not in VALUE_SCHEMAS:
            others += 1
            continue
        value = result.get("value")
        check_shape(value, {"type": "object", **VALUE_SCHEMAS[kind]}, f"{where}: result {number} ({kind}) value")
        _check_geometry(kind, value, f"{where}: result {number} ({kind})")
        if "original_width" in result and "original_height" in result:
            sizes.add((result["original_height"], result["original_width"]))
        regions.append((value[kind][0], kind, value))
        used.add(value[kind][0], where)
    if len(sizes) > 1:
        raise RefineError(f"{where}: its results give different image sizes {sorted(sizes)}")
    return regions, next(iter(sizes), None), others


def _check_geometry(kind: str, value: dict[str, Any], where: str) -> None:
    try:
        if kind == "polygonlabels":
            if len(points_array(value["points"], where)) < 3:
                raise RefineError(f"{where} has {len(value['points'])} point(s); a polygon needs at least 3")
        elif kind != "brushlabels":
            keys = ("width", "height") if kind == "rectanglelabels" else ("radiusX", "radiusY")
            points_array([value["x"], value["y"], value[keys[0]], value[keys[1]]], where)
            points_array([value.get("rotation", 0), 0], where)
            if value[keys[0]] <= 0 or value[keys[1]] <= 0:
                raise RefineError(f"{where} has no area ({keys[0]} {value[keys[0]]}, {keys[1]} {value[keys[1]]})")
            if max(abs(value[k]) for k in ("x", "y", *keys)) > ABSURD_PERCENT:
                raise RefineError(f"{where} lies more than {ABSURD_PERCENT:g} % of the image away from it")
    except BadPoints as error:
        raise RefineError(str(error)) from None


def scan_label_studio(export: Path, media: Path, given: ClassList | None, unknown_as_ignore: bool) -> SourceScan:
    """The tasks of a JSON export: the annotation of each, its regions and its image under `media`."""
    doc = read_json(export, "Label Studio export")
    check_shape(doc, SCHEMA, f"Label Studio export {export}", hint="export the project as JSON (not JSON-MIN)")
    finder, used = _Media(media), LabelUse()
    scan = SourceScan("label-studio", given or ClassList(("background",), None, (0,)), [], None, [export])
    owners: dict[str, str] = {}
    others = multi = 0
    for position, task in enumerate(doc):
        where = f"{export} task {task.get('id', f'#{position}')}"
        annotation = chosen_annotation(task)
        try:
            url = _image_url(task, where)
            sample_id = safe_id(PurePosixPath(url_candidates(url)[1]).stem)
            if annotation is None:
                scan.skipped.append((sample_id, f"{where} has no finished annotation"))
                continue
            image = finder.find(url, where)
            regions, size, other = _regions(annotation, where, used)
        except RefineError as error:
            scan.problems.append((f"task-{task.get('id', position)}", error.one_line()))
            continue
        if sample_id in owners:
            scan.problems.append((sample_id, f"{where} and {owners[sample_id]} have images of the same name"))
            continue
        owners[sample_id] = where
        others += other
        multi += sum(1 for _, kind, value in regions if len(value[kind]) > 1)
        scan.samples.append((sample_id, ("label-studio", str(image), size, tuple(regions), where)))
        scan.files.append(image)
    scan.classes, notes = classes_for(used, given, unknown_as_ignore, "Label Studio")
    scan.background_by_construction = given is None
    scan.notes += notes + _scan_notes(len(scan.skipped), others, multi)
    return scan


def _scan_notes(unannotated: int, others: int, multi: int) -> list[str]:
    notes = [f"{unannotated} task(s) have no finished annotation and are left out"] if unannotated else []
    notes += [f"{others} result(s) are not regions (choices, text, keypoints ...) and are not drawn"] if others else []
    notes += [f"{multi} region(s) carry several labels; the first one is drawn"] if multi else []
    return notes


def convert_label_studio(args: tuple[Any, ...]) -> ConvertedSample:
    """Draw one task (a worker): every region as a mask, overlaps of different classes 255."""
    image_path, declared, regions, where, values = args
    (height, width), image = image_file(Path(image_path), oriented=True)
    if declared is not None and tuple(declared) != (height, width):
        raise SampleError(f"{where}: its regions are for a {declared[1]}x{declared[0]} image but {image_path} is "
                          f"{width}x{height}")  # fmt: skip
    masks = []
    for label, kind, value in regions:
        try:
            masks.append((values.of_name(label), region_mask(kind, value, height, width), False))
        except BadRLE as error:
            raise SampleError(f"{where}: {error}") from None
    return ConvertedSample(label=compose_exclusive(masks, height, width, values.background), **image)


def region_mask(kind: str, value: dict[str, Any], height: int, width: int) -> np.ndarray:
    """HxW bool mask of one region in an image of that size."""
    from refine_cli.data.convert.datasets.coco import decode_segmentation

    if kind == "brushlabels":
        return brush_mask(value["rle"], height, width)
    if kind == "ellipselabels":
        return _ellipse(value, height, width)
    if kind == "polygonlabels":  # clipped in percent (clipping commutes with scaling): 1e308 % stays finite
        percent = clip_polygon(np.asarray(value["points"], dtype=np.float64), 100.0, 100.0, reach=100.0)
        points = np.stack([percent[:, 0] / 100 * width, percent[:, 1] / 100 * height], axis=1)
    else:
        points = clip_polygon(_rectangle(value, height, width), height, width, reach=max(height, width))
    return decode_segmentation([points.ravel().tolist()], height, width)


def _rectangle(value: dict[str, Any], height: int, width: int) -> np.ndarray:
    x, y = value["x"] / 100 * width, value["y"] / 100 * height
    w, h = value["width"] / 100 * width, value["height"] / 100 * height
    angle = math.radians(value.get("rotation") or 0.0)
    cos, sin = math.cos(angle), math.sin(angle)
    corners = ((0.0, 0.0), (w, 0.0), (w, h), (0.0, h))
    return np.array([[x + dx * cos - dy * sin, y + dx * sin + dy * cos] for dx, dy in corners], dtype=np.float64)


def _ellipse(value: dict[str, Any], height: int, width: int) -> np.ndarray:
    """Pixels whose centre lies in the ellipse, computed over its bounding box only."""
    cx, cy = value["x"] / 100 * width, value["y"] / 100 * height
    rx, ry = value["radiusX"] / 100 * width, value["radiusY"] / 100 * height
    angle = math.radians(value.get("rotation") or 0.0)
    cos, sin = math.cos(angle), math.sin(angle)
    half_x, half_y = math.hypot(rx * cos, ry * sin), math.hypot(rx * sin, ry * cos)
    x0, x1 = max(0, math.floor(cx - half_x)), min(width, math.ceil(cx + half_x) + 1)
    y0, y1 = max(0, math.floor(cy - half_y)), min(height, math.ceil(cy + half_y) + 1)
    mask = np.zeros((height, width), dtype=bool)
    if x0 >= x1 or y0 >= y1:
        return mask
    dx = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5 - cx
    dy = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5 - cy
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    mask[y0:y1, x0:x1] = (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    return mask
