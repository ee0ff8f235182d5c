"""Tiny own-data exports in the exact layouts annotation tools write, for `refine prepare custom` tests.

- CVAT "Segmentation mask 1.1": labelmap.txt (`# label:color_rgb:parts:actions`), JPEGImages/*.jpg,
  SegmentationClass/*.png as RGB colour masks, SegmentationObject/*.png, ImageSets/Segmentation/default.txt.
- Datumaro VOC: the same tree with palette (indexed) masks and train.txt / val.txt lists.
- COCO as CVAT writes it (annotations/instances_default.json + images/), as Label Studio writes it
  (result.json, file_name "images/<hash>-<name>", category ids from 0), and as Roboflow writes it
  (<split>/_annotations.coco.json beside the images, split "valid").
- A plain folder: images/ + masks/ (grey index PNGs).
Every builder returns the label arrays it painted (the oracle): id -> HxW uint8 class indices.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (48, 64)  # (height, width): tiny and not square, so a transposed mask is caught
CVAT_CLASSES = [("background", (0, 0, 0)), ("cat", (250, 50, 83)), ("dog", (51, 221, 255))]


def painted(seed: int, num_classes: int = 3, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A label with one 14x14 square per class on background, placed from the seed, never overlapping."""
    rng = np.random.default_rng(seed)
    label = np.zeros(size, dtype=np.uint8)
    band = size[1] // max(num_classes - 1, 1)
    for cls in range(1, num_classes):
        top, left = int(rng.integers(0, size[0] - 14)), (cls - 1) * band + int(rng.integers(0, band - 14 + 1))
        label[top : top + 14, left : left + 14] = cls
    return label


def photo(seed: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    return np.random.default_rng(100 + seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def save_rgb(path: Path, array: np.ndarray, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, "RGB").save(path, **kwargs)
    return path


def save_index(path: Path, label: np.ndarray, palette: list[tuple[int, int, int]] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(label, "L")
    if palette is not None:
        image = image.convert("P")
        image.putpalette([v for color in palette for v in color] + [0] * (768 - 3 * len(palette)))
    image.save(path)
    return path


def colour_mask(label: np.ndarray, classes: list[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    table = np.array([color for _, color in classes] + [(0, 0, 0)] * (256 - len(classes)), dtype=np.uint8)
    return table[label]


def write_labelmap(path: Path, classes: list[tuple[str, tuple[int, int, int]]]) -> Path:
    lines = ["# label:color_rgb:parts:actions"] + [f"{n}:{c[0]},{c[1]},{c[2]}::" for n, c in classes]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cvat_voc_export(root: Path, n: int = 6) -> dict[str, np.ndarray]:
    """CVAT "Segmentation mask 1.1": RGB colour masks, one subset named `default`."""
    labels = {}
    write_labelmap(_mkdir(root) / "labelmap.txt", CVAT_CLASSES)
    for i in range(n):
        name = f"frame_{i:06d}"
        labels[name] = painted(i)
        save_rgb(root / "JPEGImages" / f"{name}.jpg", photo(i), quality=90)
        save_rgb(root / "SegmentationClass" / f"{name}.png", colour_mask(labels[name], CVAT_CLASSES))
        save_rgb(root / "SegmentationObject" / f"{name}.png", colour_mask(labels[name], CVAT_CLASSES))
    _lists(root, {"default": sorted(labels)})
    return labels


def datumaro_voc_export(root: Path, n_train: int = 4, n_val: int = 2) -> dict[str, np.ndarray]:
    """Datumaro's VOC export: palette masks whose indices follow labelmap.txt, train/val lists."""
    labels = {}
    write_labelmap(_mkdir(root) / "labelmap.txt", CVAT_CLASSES)
    palette = [color for _, color in CVAT_CLASSES]
    names = [f"img{i}" for i in range(n_train + n_val)]
    for i, name in enumerate(names):
        labels[name] = painted(10 + i)
        save_rgb(root / "JPEGImages" / f"{name}.jpg", photo(i))
        save_index(root / "SegmentationClass" / f"{name}.png", labels[name], palette)
    _lists(root, {"train": names[:n_train], "val": names[n_train:], "trainval": names})
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(names) + "\n")
    return labels


def folder_export(root: Path, n: int = 5, splits: str | None = None, ext: str = ".png") -> dict[str, np.ndarray]:
    """images/ + masks/ with grey index masks; splits 'top' (train/images) or 'inside' (images/train)."""
    labels = {}
    for i in range(n):
        name = f"photo {i}" if i == 0 else f"p{i}"  # a space: ids are made safe ('photo_0')
        split = "val" if i == n - 1 else "train"
        if splits == "top":
            images, masks = root / split / "images", root / split / "masks"
        elif splits == "inside":
            images, masks = root / "images" / split, root / "masks" / split
        else:
            images, masks = root / "images", root / "masks"
        labels[name.replace(" ", "_")] = painted(20 + i)
        save_rgb(images / f"{name}{ext}", photo(i))
        save_index(masks / f"{name}.png", labels[name.replace(" ", "_")])
    return labels


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _lists(root: Path, lists: dict[str, list[str]]) -> None:
    folder = _mkdir(root / "ImageSets" / "Segmentation")
    for split, names in lists.items():
        (folder / f"{split}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")


def polygon_of(label: np.ndarray, cls: int) -> list[float]:
    """The class's rectangle as a COCO polygon (pixel edges: pycocotools fills [x0, x1) exactly)."""
    ys, xs = np.nonzero(label == cls)
    x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def coco_document(entries: list[tuple[str, list[dict]]], categories: list[dict]) -> dict:
    """A COCO dict: entries = [(file_name, [annotation dicts without ids])]."""
    images, annotations = [], []
    for image_id, (file_name, anns) in enumerate(entries, 1):
        images.append({"id": image_id, "file_name": file_name, "height": SIZE[0], "width": SIZE[1]})
        for ann in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "iscrowd": 0, **ann})
    return {"images": images, "annotations": annotations, "categories": categories}


def write_json(path: Path, doc: dict) -> Path:
    _mkdir(path.parent)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path
