"""Miniature NYUDv2, ADE20K and Cityscapes sources in their EXACT official layouts and file formats.

- NYUDv2: `nyu_depth_v2_labeled.mat` as MATLAB v7.3 (HDF5 with the 512-byte MATLAB header), the real
  key names and MATLAB's column-major axes (h5py sees images as N x 3 x W x H); `splits.mat` and
  `classMapping40.mat` as MATLAB v5 files with the real variable names and shapes.
- ADE20K: `ADEChallengeData2016.zip` with images/ and annotations/{training,validation}.
- Cityscapes: `gtFine_trainvaltest.zip` and `leftImg8bit_trainvaltest.zip` (the login stub of the
  site is in tests/support/cityscapes_stub.py).

Builders paint SOURCE label values (NYU ids, ADE 0..150, Cityscapes labelIds) at known places; the
tests hold the expected unified values as literals taken from the official mapping tables.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from PIL import Image

NYU_MAT = "nyu_depth_v2_labeled.mat"
NYU_SPLITS = "splits.mat"
NYU_MAPPING = "classMapping40.mat"
ADE_ZIP = "ADEChallengeData2016.zip"
CS_GT_ZIP = "gtFine_trainvaltest.zip"
CS_IMG_ZIP = "leftImg8bit_trainvaltest.zip"


def _seed(text: str) -> int:
    return zlib.crc32(text.encode())


def _image(key: str, height: int, width: int) -> np.ndarray:
    """A smooth RGB image, distinct per key."""
    rng = np.random.default_rng(_seed(key))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    a, b, c = rng.uniform(0.02, 0.1, size=3)
    base = np.stack([np.sin(xx * a), np.cos(yy * b), np.sin((xx + yy) * c)], axis=-1)
    return ((base * 0.5 + 0.5) * 250).astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def paint_patches(height: int, width: int, values: list[int], fill: int, dtype: type = np.uint8) -> np.ndarray:
    """`fill` everywhere, then one 6x6 patch per value along a grid; see `patch_center`."""
    label = np.full((height, width), fill, dtype=dtype)
    for index, value in enumerate(values):
        y, x = patch_center(index, width)
        label[y - 3 : y + 3, x - 3 : x + 3] = value
    return label


def patch_center(index: int, width: int) -> tuple[int, int]:
    """(row, col) of the centre of patch `index` painted by `paint_patches`."""
    per_row = (width - 4) // 8
    return 6 + 8 * (index // per_row), 6 + 8 * (index % per_row)


# ----------------------------------------------------------------------------------------------- NYUDv2

# NYU id -> 40-class id, the 37 single-name classes (docs/dataset-facts.md appendix B).
NYU40_SINGLE = {
    21: 1, 11: 2, 3: 3, 157: 4, 5: 5, 83: 6, 19: 7, 28: 8, 59: 9, 88: 10, 64: 11, 7: 12, 80: 13, 36: 14,
    42: 15, 89: 16, 169: 17, 119: 18, 122: 19, 143: 20, 141: 21, 4: 22, 85: 23, 17: 24, 172: 25, 15: 26,
    135: 27, 123: 28, 26: 29, 45: 30, 331: 31, 158: 32, 124: 33, 24: 34, 144: 35, 136: 36, 55: 37,
}  # fmt: skip
NYU40_OTHERSTRUCTURE = [
    8, 25, 33, 38, 51, 53, 57, 58, 62, 65, 79, 94, 104, 112, 134, 153, 215, 216, 223, 225, 238, 241, 242, 256,
    295, 301, 339, 342, 354, 363, 372, 380, 392, 408, 412, 453, 456, 463, 477, 497, 541, 550, 553, 567, 573, 582,
    591, 609, 612, 615, 642, 645, 657, 658, 659, 663, 667, 668, 686, 700, 702, 777, 778, 782, 850, 861, 868, 874,
]  # fmt: skip
NYU40_OTHERFURNITURE = [
    12, 43, 48, 50, 87, 106, 111, 161, 163, 174, 183, 204, 214, 219, 221, 224, 236, 262, 278, 291, 298, 313, 343,
    344, 356, 359, 373, 393, 401, 414, 418, 419, 430, 443, 444, 447, 448, 457, 458, 460, 462, 475, 479, 485, 486,
    493, 494, 498, 499, 509, 510, 515, 521, 524, 540, 549, 551, 554, 556, 558, 576, 580, 608, 625, 703, 734, 770,
    772, 797, 800, 803, 804, 813, 814, 815, 820, 829, 835, 858, 863, 882, 892,
]  # fmt: skip
NYU40_NAMES = (
    "wall,floor,cabinet,bed,chair,sofa,table,door,window,bookshelf,picture,counter,blinds,desk,shelves,curtain,"
    "dresser,pillow,mirror,floor mat,clothes,ceiling,books,refridgerator,television,paper,towel,shower curtain,"
    "box,whiteboard,person,night stand,toilet,sink,lamp,bathtub,bag,otherstructure,otherfurniture,otherprop"
).split(",")

# Source NYU ids painted into every frame (0 = unlabeled, the others hit each kind of mapping).
NYU_PAINTED = [0, 21, 11, 157, 55, 8, 874, 12, 892, 1, 894, 331]
NYU_TRAIN = [3, 4, 6]  # 1-based, like the real trainNdxs (min 3)
NYU_TEST = [1, 2, 5]


def nyu_map_class() -> np.ndarray:
    """`mapClass` as in classMapping40.mat: 894 entries, entry i-1 = 40-class id of NYU label i."""
    mapping = np.full(894, 40, dtype=np.uint8)
    for nyu_id, cls in NYU40_SINGLE.items():
        mapping[nyu_id - 1] = cls
    mapping[np.asarray(NYU40_OTHERSTRUCTURE) - 1] = 38
    mapping[np.asarray(NYU40_OTHERFURNITURE) - 1] = 39
    return mapping


def _cell(strings: list[str]) -> np.ndarray:
    """A 1xN MATLAB cell array of char rows, as scipy.io.savemat writes it."""
    cell = np.empty((1, len(strings)), dtype=object)
    for index, text in enumerate(strings):
        cell[0, index] = text
    return cell


def _matlab73_header() -> bytes:
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    return text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"


@dataclass
class FakeNYU:
    """Where the NYU files are and what each frame holds (H x W, the natural orientation)."""

    mat: Path
    splits: Path
    mapping: Path
    images: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    train_ids: list[str] = field(default_factory=list)
    test_ids: list[str] = field(default_factory=list)


def build_nyu(dest: Path, height: int = 48, width: int = 64, frames: int = 6, frame_px: int = 2) -> FakeNYU:
    """Write the three NYU files into `dest`; images get a white `frame_px` frame like the real ones."""
    dest.mkdir(parents=True, exist_ok=True)
    fake = FakeNYU(dest / NYU_MAT, dest / NYU_SPLITS, dest / NYU_MAPPING)
    images = np.zeros((frames, 3, width, height), dtype=np.uint8)  # MATLAB 480x640x3xN seen from HDF5
    labels = np.zeros((frames, width, height), dtype=np.uint16)
    for index in range(frames):
        sample_id = f"{index + 1:06d}"
        rgb = _image(f"nyu{index}", height, width)
        if frame_px:
            rgb[:frame_px], rgb[-frame_px:], rgb[:, :frame_px], rgb[:, -frame_px:] = 255, 255, 255, 255
        values = NYU_PAINTED[index % 2 :] + NYU_PAINTED[: index % 2]  # vary the position per frame
        label = paint_patches(height, width, values, fill=0, dtype=np.uint16)
        fake.images[sample_id], fake.labels[sample_id] = rgb, label
        images[index] = rgb.transpose(2, 1, 0)
        labels[index] = label.T
    with h5py.File(fake.mat, "w", userblock_size=512) as handle:
        handle.create_dataset("images", data=images, chunks=(1, 3, width, height))
        handle.create_dataset("labels", data=labels, chunks=(1, width, height))
        handle.create_dataset("depths", data=np.ones((frames, width, height), dtype=np.float32))
        handle.create_dataset("instances", data=np.zeros((frames, width, height), dtype=np.uint8))
        handle.create_dataset("sceneTypes", data=np.zeros((1, frames), dtype=np.uint64))
    with open(fake.mat, "r+b") as handle:
        handle.write(_matlab73_header())
    train = [i for i in NYU_TRAIN if i <= frames]
    test = [i for i in NYU_TEST if i <= frames]
    scipy.io.savemat(
        fake.splits,
        {"trainNdxs": np.asarray(train, dtype=np.uint16).reshape(-1, 1),
         "testNdxs": np.asarray(test, dtype=np.uint16).reshape(-1, 1)},
    )  # fmt: skip
    scipy.io.savemat(
        fake.mapping,
        {"className": _cell(NYU40_NAMES), "mapClass": nyu_map_class().reshape(1, -1),
         "allClassName": _cell([f"nyu label {i}" for i in range(1, 895)])},
    )  # fmt: skip
    fake.train_ids = [f"{i:06d}" for i in train]
    fake.test_ids = [f"{i:06d}" for i in test]
    return fake


# ---------------------------------------------------------------------------------------------- ADE20K

ADE_PAINTED = [0, 1, 2, 3, 13, 150, 149, 8]


@dataclass
class FakeADE:
    archive: Path
    train_ids: list[str]
    val_ids: list[str]
    gray_id: str  # one training image is a grayscale JPEG, as in the real data
    labels: dict[str, np.ndarray] = field(default_factory=dict)


def build_ade20k(
    dest: Path, n_train: int = 3, n_val: int = 2, height: int = 40, width: int = 56, bad: dict[str, str] | None = None
) -> FakeADE:
    """Write ADEChallengeData2016.zip; `bad` maps a sample id to 'missing-label', 'wrong-size' or 'rgb-label'."""
    bad = bad or {}
    dest.mkdir(parents=True, exist_ok=True)
    root = "ADEChallengeData2016"
    fake = FakeADE(dest / ADE_ZIP, [], [], gray_id="ADE_train_00000002")
    with zipfile.ZipFile(fake.archive, "w") as archive:
        archive.writestr(f"{root}/", b"")
        archive.writestr(f"{root}/objectInfo150.txt", "Idx\tRatio\tTrain\tVal\tName\n1\t0.1576\t11664\t1172\twall\n")
        archive.writestr(f"{root}/sceneCategories.txt", "ADE_train_00000001 airport_terminal\n")
        for folder, prefix, count, ids in (
            ("training", "ADE_train", n_train, fake.train_ids),
            ("validation", "ADE_val", n_val, fake.val_ids),
        ):
            for number in range(1, count + 1):
                sample_id = f"{prefix}_{number:08d}"
                ids.append(sample_id)
                h, w = (height, width) if number % 2 else (width, height)  # a portrait one too
                rgb = _image(sample_id, h, w)
                image = rgb[..., 0] if sample_id == fake.gray_id else rgb
                archive.writestr(f"{root}/images/{folder}/{sample_id}.jpg", _jpeg(image))
                values = ADE_PAINTED[number % 3 :] + ADE_PAINTED[: number % 3]
                label = paint_patches(h, w, values, fill=4 + number)
                fake.labels[sample_id] = label
                kind = bad.get(sample_id)
                if kind == "missing-label":
                    continue
                if kind == "wrong-size":
                    label = label[:-2]
                member = f"{root}/annotations/{folder}/{sample_id}.png"
                archive.writestr(member, _png(np.stack([label] * 3, -1) if kind == "rgb-label" else label))
    return fake


# ------------------------------------------------------------------------------------------ Cityscapes

# labelIds painted into train/val frames: void ids, each kind of class, and the last id (33).
CS_PAINTED = [0, 1, 7, 8, 11, 24, 26, 33, 9, 14, 29, 30, 31, 17, 23]
CS_CITIES = {"train": ["aachen", "bochum"], "val": ["frankfurt", "munster"], "test": ["berlin"]}


@dataclass
class FakeCityscapes:
    gt_zip: Path
    img_zip: Path
    ids: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)

    def md5(self, path: Path) -> str:
        return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def build_cityscapes(
    dest: Path, height: int = 32, width: int = 64, per_city: int = 1, bad: dict[str, str] | None = None
) -> FakeCityscapes:
    """Write both zips; `bad` maps a sample id to 'missing-label', 'wrong-size' or 'bad-value'."""
    bad = bad or {}
    dest.mkdir(parents=True, exist_ok=True)
    fake = FakeCityscapes(dest / CS_GT_ZIP, dest / CS_IMG_ZIP)
    with zipfile.ZipFile(fake.gt_zip, "w") as gt, zipfile.ZipFile(fake.img_zip, "w") as img:
        for archive in (gt, img):
            archive.writestr("license.txt", "The Cityscapes Dataset ... terms of use\n")
            archive.writestr("README", "The Cityscapes Dataset\n")
        for split, cities in CS_CITIES.items():
            ids = fake.ids.setdefault(split, [])
            for city in cities:
                for frame in range(per_city):
                    stem = f"{city}_{frame:06d}_{19 + frame:06d}"
                    ids.append(stem)
                    img.writestr(
                        f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png", _png(_image(stem, height, width))
                    )
                    if split == "test":  # the real test GT is a dummy: mostly 'unlabeled' with ego vehicle
                        label = np.zeros((height, width), dtype=np.uint8)
                        label[-4:] = 1
                    else:
                        offset = _seed(stem) % len(CS_PAINTED)
                        label = paint_patches(height, width, CS_PAINTED[offset:] + CS_PAINTED[:offset], fill=21)
                    fake.labels[stem] = label
                    kind = bad.get(stem)
                    if kind == "wrong-size":
                        label = label[:, :-4]
                    elif kind == "bad-value":
                        label = label.copy()
                        label[0, 0] = 40
                    base = f"gtFine/{split}/{city}/{stem}_gtFine"
                    if kind != "missing-label":
                        gt.writestr(f"{base}_labelIds.png", _png(label))
                    gt.writestr(f"{base}_instanceIds.png", _png(label.astype(np.uint16) * 1000))
                    gt.writestr(f"{base}_color.png", _png(np.stack([label] * 4, -1)))
                    gt.writestr(
                        f"{base}_polygons.json", json.dumps({"imgHeight": height, "imgWidth": width, "objects": []})
                    )
    return fake
