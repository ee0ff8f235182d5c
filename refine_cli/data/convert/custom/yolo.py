"""Ultralytics YOLO segmentation datasets (`--from data.yaml`) -> labels as Ultralytics draws its masks.

data.yaml: `names` (a list, or a dict {0: name, ...}), `path` (the dataset folder; default: the yaml's
folder; a relative one is taken from the yaml's folder), `train`/`val`/`test` (each a folder of images,
a .txt list of image paths, or a list of those; Roboflow's `../train/images` is found without the `../`
as Ultralytics does). The label of `<...>/images/<...>/a.jpg` is `<...>/labels/<...>/a.txt` (the last
`images` folder swapped), one polygon per line: `class x1 y1 x2 y2 ...` normalised to 0-1.

Background is class 0 and YOLO class k is k+1. A polygon covers the pixels OpenCV's fillPoly fills for
its vertices scaled to pixels and truncated to integers (Ultralytics' `polygon2mask`); where polygons
overlap the smaller one is on top (its `polygons2masks_overlap`). An empty label file is an all-background
image; an image without a label file is listed and, as Ultralytics does, taken as background. Images are
read as Ultralytics reads them (OpenCV applies the EXIF orientation), so a rotated phone photo is stored
rotated. No file outside the dataset folder is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.convert.base import ConvertedSample, SampleError
from refine_cli.data.convert.custom.class_files import make_class_list
from refine_cli.data.convert.custom.class_map import ClassValues
from refine_cli.data.convert.custom.export_paths import OutsideExport, as_posix, inside_export, is_inside
from refine_cli.data.convert.custom.geometry import clip_polygon
from refine_cli.data.convert.custom.images import image_file
from refine_cli.data.convert.custom.json_shapes import check_shape, read_yaml
from refine_cli.data.convert.custom.layout import safe_id
from refine_cli.data.convert.custom.source import SourceScan
from refine_cli.data.format.imageio import IMAGE_SUFFIXES
from refine_cli.errors import RefineError

SPLITS = ("train", "val", "test")
_ENTRY = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]}
SCHEMA = {
    "type": "object",
    "required": ["names"],
    "properties": {
        "names": {
            "oneOf": [
                {"type": "array", "minItems": 1, "items": {"type": ["string", "integer"]}},
                {"type": "object", "minProperties": 1, "additionalProperties": {"type": ["string", "integer"]}},
            ]
        },
        "nc": {"type": "integer", "minimum": 1},
        "path": {"type": ["string", "null"]},
        **{split: _ENTRY for split in SPLITS},
    },
}


def read_data_yaml(path: Path) -> dict[str, Any]:
    doc = read_yaml(path, "YOLO data file")
    check_shape(doc, SCHEMA, f"YOLO data file {path}", hint="see docs/custom-data.md for data.yaml")
    if "kpt_shape" in doc:
        raise RefineError(f"{path} describes a pose (keypoint) dataset, not segmentation")
    return doc


def class_names(doc: dict[str, Any], where: Path) -> list[str]:
    names = doc["names"]
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except ValueError:
            raise RefineError(f"{where}: the keys of `names` must be class numbers 0, 1, ...") from None
        if keys != list(range(len(keys))):
            raise RefineError(f"{where}: `names` must number the classes 0 to {len(keys) - 1} without gaps")
        names = [names[k] if k in names else names[str(k)] for k in keys]
    if doc.get("nc") is not None and doc["nc"] != len(names):
        raise RefineError(f"{where}: nc is {doc['nc']} but `names` has {len(names)} classes")
    return [str(name) for name in names]


def dataset_root(doc: dict[str, Any], yaml_path: Path) -> Path:
    """data.yaml's `path` (from the yaml's folder when relative), else the yaml's folder."""
    named = doc.get("path")
    root = yaml_path.parent if not named else (yaml_path.parent / Path(named).expanduser())
    if not root.is_dir():
        raise RefineError(f"{yaml_path}: the dataset folder {root} (its `path`) does not exist")
    return root


def _entry_path(root: Path, entry: str, where: str) -> Path:
    """A split entry as Ultralytics resolves it: `root/entry`, else without a leading `../` (Roboflow)."""
    if entry.startswith("../"):
        try:
            direct: Path | None = inside_export(root, root, entry, where)
        except OutsideExport:
            direct = None
        if direct is not None and direct.exists():
            return direct
        return inside_export(root, root, entry[3:], where)
    return inside_export(root, root, entry, where)


def _entry_exists(root: Path, entry: str) -> bool:
    try:
        return _entry_path(root, entry, "test").exists()
    except OutsideExport:
        return True  # let the refusal be reported where it is read


def _split_images(root: Path, entry: str, where: str, scan: SourceScan, others: list[Path]) -> list[Path]:
    """The images of one split entry: a folder (recursively) or a list file (a line outside the dataset: a problem)."""
    path = _entry_path(root, entry, where)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        others += [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES and p.suffix.lower() != ".txt"]
        return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not path.is_file():
        raise RefineError(f"{where}: {entry!r} is neither a folder nor a list file ({path})")
    images = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        named = line.strip()
        try:
            if named:
                base = path.parent if named.startswith("./") else root
                images.append(inside_export(root, base, named, f"{path} line {number}"))
        except OutsideExport as error:
            scan.problems.append((safe_id(Path(as_posix(named)).stem), error.one_line()))
    return images


def label_path(image: Path) -> Path:
    """Ultralytics' img2label_paths: the last `/images/` of the path becomes `/labels/`, the suffix `.txt`."""
    text = image.as_posix()
    if "/images/" not in text:
        return image.with_suffix(".txt")
    head, _, tail = text.rpartition("/images/")
    return Path(f"{head}/labels/{tail}").with_suffix(".txt")


def scan_yolo(yaml_path: Path) -> SourceScan:
    """The images of every split in data.yaml, with their label files; background + the yaml's names."""
    doc = read_data_yaml(yaml_path)
    names = class_names(doc, yaml_path)
    root = dataset_root(doc, yaml_path)
    classes = make_class_list([(name, None) for name in ["background", *names]], f"{yaml_path} names")
    scan = SourceScan("yolo", classes, [], {}, [yaml_path])
    owners: dict[str, Path] = {}
    unlabelled: list[str] = []
    others: list[Path] = []
    for split in SPLITS:
        entries = doc.get(split) or []
        for entry in [entries] if isinstance(entries, str) else entries:
            if split == "test" and not _entry_exists(root, entry):
                scan.notes.append(f"data.yaml's test split {entry!r} does not exist; there is no test split")
                continue
            try:
                images = _split_images(root, entry, f"{yaml_path}: {split}", scan, others)
            except RefineError as error:
                raise RefineError(error.message, hint="fix data.yaml (docs/custom-data.md)") from None
            for image in images:
                _add(scan, split, image, root, owners, unlabelled)
    if not scan.samples and not scan.problems:
        raise RefineError(f"{yaml_path} names no images", hint="its train/val/test name folders of images")
    scan.notes += _notes(unlabelled, others)
    return scan


def _add(scan: SourceScan, split: str, image: Path, root: Path, owners: dict[str, Path], unlabelled: list[str]) -> None:
    sample_id = safe_id(image.stem)
    if owners.get(sample_id) not in (None, image):
        scan.problems.append((sample_id, f"{image} and {owners[sample_id]} are two images of the same name"))
        return
    assert scan.splits is not None
    scan.splits.setdefault(split, []).append(sample_id)
    if sample_id in owners:  # the same image in two splits (e.g. val: the train folder)
        return
    owners[sample_id] = image
    labels = label_path(image)
    if not is_inside(root, labels):
        scan.problems.append((sample_id, f"the label file of {image} would be {labels}, outside the dataset folder"))
        return
    if not labels.is_file():
        unlabelled.append(image.name)
    scan.files += [image] + ([labels] if labels.is_file() else [])
    nc = len(scan.classes.names) - 1
    scan.samples.append((sample_id, ("yolo", str(image), str(labels) if labels.is_file() else None, nc)))


def _notes(unlabelled: list[str], others: list[Path]) -> list[str]:
    notes = []
    if unlabelled:
        shown = ", ".join(unlabelled[:8]) + (f" and {len(unlabelled) - 8} more" if len(unlabelled) > 8 else "")
        notes.append(
            f"{len(unlabelled)} image(s) have no label file and are all background (as in Ultralytics): {shown}"
        )
    if others:
        kinds = ", ".join(sorted({p.suffix.lower() or p.name for p in others})[:8])
        notes.append(
            f"{len(others)} file(s) in the image folders are not images refine reads ({kinds}) and are left out"
        )
    return notes


def read_polygons(path: Path, num_classes: int) -> list[tuple[int, np.ndarray]]:
    """(YOLO class, Nx2 normalised points) per line; SampleError naming the file and line for a bad one."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SampleError(f"cannot read label file {path}: {error}") from None
    polygons = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path} line {number}"
        try:
            values = np.array([float(v) for v in parts], dtype=np.float64)
        except ValueError:
            raise SampleError(f"{where} holds a non-number") from None
        if not np.isfinite(values).all():
            raise SampleError(f"{where} has the coordinate {values[~np.isfinite(values)][0]} (not a finite number)")
        cls, coords = values[0], values[1:]
        if cls != int(cls) or not 0 <= cls < num_classes:
            raise SampleError(
                f"{where}: class {parts[0]} is not one of the {num_classes} classes (0-{num_classes - 1})"
            )
        if len(coords) % 2:
            raise SampleError(f"{where} has an odd number of coordinates")
        if len(coords) == 4:
            raise SampleError(f"{where} is a box (x y w h), not a polygon: refine reads YOLO segmentation labels")
        if len(coords) < 6:
            raise SampleError(f"{where} has {len(coords) // 2} point(s); a polygon needs at least 3")
        polygons.append((int(cls), coords.reshape(-1, 2)))
    return polygons


def convert_yolo(args: tuple[Any, ...]) -> ConvertedSample:
    """Draw one image's polygons (a worker)."""
    image_path, labels, num_classes, values = args
    (height, width), image = image_file(Path(image_path), oriented=True)
    polygons = read_polygons(Path(labels), num_classes) if labels else []
    return ConvertedSample(label=draw_polygons(polygons, height, width, values), **image)


def draw_polygons(polygons: list[tuple[int, np.ndarray]], height: int, width: int, values: ClassValues) -> np.ndarray:
    """Ultralytics' overlap masks at full size: each polygon filled by OpenCV, larger ones first."""
    import cv2

    scaled = []
    for cls, points in polygons:
        pixels = clip_polygon(points * np.array([width, height], dtype=np.float64), height, width)
        if len(pixels):  # empty: wholly beyond the clip box
            scaled.append((values.of_index(cls + 1), pixels.astype(np.int32).reshape(1, -1, 2)))
    scratch = np.zeros((height, width), dtype=np.uint8)
    areas = []
    for _, pixels in scaled:  # the area of each filled mask, counted in its box on one scratch canvas
        cv2.fillPoly(scratch, pixels, 1)
        (x0, y0), (x1, y1) = np.clip(pixels[0].min(0), 0, None), np.clip(pixels[0].max(0) + 1, 0, None)
        areas.append(int(scratch[y0:y1, x0:x1].sum()))
        cv2.fillPoly(scratch, pixels, 0)
    label = np.full((height, width), values.background, dtype=np.uint8)
    for index in np.argsort(-np.asarray(areas, dtype=np.int64), kind="stable"):
        value, pixels = scaled[int(index)]
        cv2.fillPoly(label, pixels, int(value))
    return label
