"""Finding the samples of own data: which layout a folder is, which image goes with which mask, splits.

Layouts (docs/custom-data.md has the trees):
- `folder`: images/ + masks/ (or labels/, annotations/), matched by file stem; train/ val/ (test/)
  subfolders at the top or inside images/ and masks/ become splits;
- `voc`: JPEGImages/ + SegmentationClass/ + ImageSets/Segmentation/*.txt (+ labelmap.txt), as CVAT
  ("Segmentation mask 1.1"), Datumaro and Label Studio export; each list file is a split;
- `coco`: a COCO JSON file (see coco_json.py);
- `labelme`, `label-studio`, `yolo`, `cityscapes`: the annotation-file sources (their modules beside
  this one), told apart by a YAML file (YOLO's data.yaml), `*_polygons.json` files, or the first keys
  of a JSON file (`shapes`: labelme; a list of tasks: Label Studio; `images`: COCO).
Pairing problems (an image without a mask, a mask without an image, two files for one id) are collected
and reported together, never resolved by a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from refine_cli.data.format.imageio import IMAGE_SUFFIXES
from refine_cli.errors import RefineError

MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_DIRS = ("masks", "labels", "annotations")
SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
VOC_VOID_COLOR = (224, 224, 192)  # the VOC format's "void / object boundary" colour
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=,@-]")


@dataclass
class PairedSample:
    """One image and its mask (folder and VOC layouts)."""

    sample_id: str
    image: Path
    mask: Path


@dataclass
class Scan:
    """What a layout holds: samples, the source's own splits (or none), problems and a class file if any."""

    kind: str
    samples: list[PairedSample]
    splits: dict[str, list[str]] | None
    problems: list[tuple[str, str]] = field(default_factory=list)
    labelmap: Path | None = None
    void_colors: tuple[tuple[int, int, int], ...] = ()


def safe_id(name: str) -> str:
    """A file stem (or list entry with sub-folders) as a flat, safe sample id: other characters become '_'."""
    flat = _UNSAFE.sub("_", name.replace("/", "__")).lstrip(".") or "_"
    return flat.replace("..", "_.")


def json_kind(path: Path) -> str:
    """`labelme`, `label-studio`, `cityscapes` or `coco`, from the first 64 KB of a JSON file (never all of it)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(65536).decode("utf-8-sig", errors="replace").lstrip()
    except OSError as error:
        raise RefineError(f"cannot read {path}: {error.strerror or error}") from None
    if head.startswith("["):
        return "label-studio"
    if re.search(r'"shapes"\s*:', head):
        return "labelme"
    if re.search(r'"imgHeight"\s*:', head) and re.search(r'"objects"\s*:', head):
        return "cityscapes"
    return "coco"


def detect_format(path: Path) -> str:
    """The source format of `--from`, from what it holds; RefineError describing the accepted layouts."""
    if path.is_file():
        if path.suffix.lower() in (".yaml", ".yml"):
            return "yolo"
        if path.suffix.lower() == ".json":
            return json_kind(path)
        raise RefineError(f"--from {path} is a file but not a .json or data.yaml",
                          hint="give a folder, a COCO or Label Studio JSON file, or a YOLO data.yaml")  # fmt: skip
    if not path.is_dir():
        raise RefineError(f"--from {path} does not exist")
    if (path / "JPEGImages").is_dir() and (path / "SegmentationClass").is_dir():
        return "voc"
    if _folder_roots(path):
        return "folder"
    if any((path / name).is_file() for name in ("data.yaml", "data.yml")):
        return "yolo"
    if next(path.rglob("*_polygons.json"), None) is not None:
        return "cityscapes"
    jsons = coco_files_in(path) or sorted(path.glob("*/*.json"))
    if jsons:
        kind = json_kind(jsons[0])
        if kind == "label-studio":
            raise RefineError(f"{path} holds a Label Studio export", hint=f"give the file itself: --from {jsons[0]}")
        return kind
    raise RefineError(
        f"{path} is not a layout refine prepare custom reads",
        hint="expected images/ + masks/ (or labels/), a VOC export (JPEGImages/ + SegmentationClass/), a COCO "
        "or Label Studio .json, a folder of labelme or *_polygons.json files, or a YOLO data.yaml; "
        "see docs/custom-data.md",
    )


def coco_files_in(path: Path) -> list[Path]:
    """COCO JSON files of an export: annotations/*.json (CVAT), *.json, or Roboflow's <split>/_annotations.coco.json."""
    for folder in (path / "annotations", path):
        found = sorted(p for p in folder.glob("*.json") if p.is_file()) if folder.is_dir() else []
        if found:
            return found
    return sorted(p for p in path.glob("*/_annotations.coco.json") if p.is_file())


def _mask_dir(folder: Path) -> Path | None:
    for name in MASK_DIRS:
        candidate = folder / name
        if candidate.is_dir() and any(p.suffix.lower() in MASK_SUFFIXES for p in candidate.rglob("*")):
            return candidate
    return None


def _folder_roots(path: Path) -> dict[str | None, tuple[Path, Path]]:
    """split (None: unsplit) -> (images dir, masks dir) for the `folder` layout."""
    roots: dict[str | None, tuple[Path, Path]] = {}
    for sub, split in SPLIT_DIRS.items():  # train/images + train/masks
        images, masks = path / sub / "images", _mask_dir(path / sub)
        if images.is_dir() and masks is not None:
            roots[split] = (images, masks)
    if roots:
        return roots
    images, masks = path / "images", _mask_dir(path)
    if not images.is_dir() or masks is None:
        return {}
    for sub, split in SPLIT_DIRS.items():  # images/train + masks/train
        if (images / sub).is_dir() and (masks / sub).is_dir():
            roots[split] = (images / sub, masks / sub)
    return roots or {None: (images, masks)}


def _by_stem(folder: Path, suffixes: tuple[str, ...], what: str, problems: list[tuple[str, str]]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for file in sorted(folder.iterdir()):
        if not file.is_file() or file.name.startswith(".") or file.suffix.lower() not in suffixes:
            continue
        stem = safe_id(file.stem)
        if stem in files:
            problems.append((stem, f"two {what} files for one sample: {files[stem]} and {file}"))
            continue
        files[stem] = file
    return files


def _pair(images: dict[str, Path], masks: dict[str, Path], problems: list[tuple[str, str]]) -> list[PairedSample]:
    for stem in sorted(set(images) - set(masks)):
        problems.append((stem, f"image {images[stem]} has no mask"))
    for stem in sorted(set(masks) - set(images)):
        problems.append((stem, f"mask {masks[stem]} has no image"))
    return [PairedSample(stem, images[stem], masks[stem]) for stem in sorted(set(images) & set(masks))]


def scan_folder(path: Path) -> Scan:
    """The `folder` layout: pairs by stem in every split folder; ids must be unique across splits."""
    roots = _folder_roots(path)
    if not roots:
        raise RefineError(f"{path} has no images/ with a masks/ (or labels/, annotations/) folder beside it")
    problems: list[tuple[str, str]] = []
    samples: list[PairedSample] = []
    splits: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for split, (image_dir, mask_dir) in roots.items():
        images = _by_stem(image_dir, IMAGE_SUFFIXES, "image", problems)
        masks = _by_stem(mask_dir, MASK_SUFFIXES, "mask", problems)
        for sample in _pair(images, masks, problems):
            if sample.sample_id in owner:
                problems.append(
                    (sample.sample_id, f"{sample.image} has the same name as a file in {owner[sample.sample_id]}")
                )  # noqa: E501
                continue
            owner[sample.sample_id] = str(image_dir)
            samples.append(sample)
            splits.setdefault(split or "all", []).append(sample.sample_id)
    return Scan("folder", samples, None if None in roots else splits, problems)


def _voc_lists(path: Path) -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {}
    folder = path / "ImageSets" / "Segmentation"
    for file in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
        names = [
            line.split()[0] for line in file.read_text(encoding="utf-8", errors="replace").splitlines() if line.split()
        ]  # noqa: E501
        lists[file.stem] = list(dict.fromkeys(names))
    if "trainval" in lists and "train" in lists and "val" in lists:
        del lists["trainval"]  # the union of the other two, not a split of its own
    return lists


def scan_voc(path: Path) -> Scan:
    """The VOC layout: list files name the samples (all masks when there is no list); masks by name."""
    problems: list[tuple[str, str]] = []
    image_files = {p.relative_to(path / "JPEGImages").with_suffix("").as_posix(): p
                   for p in (path / "JPEGImages").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}  # fmt: skip
    mask_files = {p.relative_to(path / "SegmentationClass").with_suffix("").as_posix(): p
                  for p in (path / "SegmentationClass").rglob("*") if p.suffix.lower() in MASK_SUFFIXES}  # fmt: skip
    lists = _voc_lists(path)
    listed = list(dict.fromkeys(name for names in lists.values() for name in names)) if lists else sorted(mask_files)
    samples: list[PairedSample] = []
    ids: dict[str, str] = {}
    for name in listed:
        sample_id = safe_id(name)
        image, mask = image_files.get(name), mask_files.get(name)
        if image is None:
            where = f"{path / 'SegmentationClass' / name}.png" if mask else f"list entry {name!r}"
            problems.append((sample_id, f"{where} has no image in {path / 'JPEGImages'}"))
        elif mask is None:
            problems.append((sample_id, f"image {image} has no mask in {path / 'SegmentationClass'}"))
        elif sample_id in ids:
            problems.append((sample_id, f"{name!r} and {ids[sample_id]!r} give the same sample id"))
        else:
            ids[sample_id] = name
            samples.append(PairedSample(sample_id, image, mask))
    for name in sorted(set(mask_files) - set(image_files) - set(listed)):
        problems.append((safe_id(name), f"mask {mask_files[name]} has no image"))
    good = {sample.sample_id for sample in samples}
    splits = {split: [safe_id(n) for n in names if safe_id(n) in good] for split, names in lists.items()}
    labelmap = path / "labelmap.txt"
    return Scan("voc", samples, splits or None, problems, labelmap if labelmap.is_file() else None, (VOC_VOID_COLOR,))
