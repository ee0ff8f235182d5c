"""Miniature raw archives of VOC 2012, SBD and COCO 2017 in their EXACT official layouts.

Each builder writes the archive(s) a user would download (same member paths, same file formats:
palette PNGs, MATLAB v5 `GTcls` structs, COCO JSON with polygons and uncompressed RLE) and returns
the ground truth it painted, so tests compare the converted output with an independent oracle.
Contents are deterministic per sample id.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse
from PIL import Image

from refine_cli.class_tables import voc_palette

VOC_TAR = "VOCtrainval_11-May-2012.tar"
SBD_TGZ = "benchmark.tgz"
COCO_ANN_ZIP = "annotations_trainval2017.zip"
COCO_TRAIN_ZIP = "train2017.zip"
COCO_VAL_ZIP = "val2017.zip"

# Default ids: VOC train/val plus SBD train/val chosen so every case of the train_aug arithmetic occurs:
# an SBD-train id that is VOC val (must be excluded), SBD ids that are VOC train (VOC label wins),
# and SBD-only ids (SBD label and image).
VOC_TRAIN = ["2007_000032", "2007_000039", "2008_000002"]
VOC_VAL = ["2007_000033", "2008_000008"]
SBD_TRAIN = ["2008_000002", "2007_000033", "2008_000010", "2008_000015"]
SBD_VAL = ["2007_000032", "2008_000020"]
PORTRAIT_ID = "2008_000008"  # one image is 48 wide x 64 high, to catch width/height swaps


def _seed(sample_id: str, salt: str = "") -> int:
    return zlib.crc32(f"{salt}{sample_id}".encode())


def _image(sample_id: str, height: int, width: int) -> np.ndarray:
    """A distinct RGB image per id: smooth gradients plus mild grain, like a photo to a JPEG encoder."""
    rng = np.random.default_rng(_seed(sample_id, "img"))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    a, b, c = rng.uniform(0.01, 0.08, size=3)
    base = np.stack([np.sin(xx * a), np.cos(yy * b), np.sin((xx + yy) * c)], axis=-1)
    texture = rng.normal(0.0, 10.0, size=base.shape)  # photo-like detail, so JPEG sizes are realistic
    return np.clip((base * 0.5 + 0.5) * 235 + 10 + texture, 0, 255).astype(np.uint8)


def _jpeg(array: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _class_map(sample_id: str, height: int, width: int, border: bool) -> np.ndarray:
    """Background with two rectangles of VOC classes 1..20; VOC style adds a 255 band around objects."""
    rng = np.random.default_rng(_seed(sample_id, "lbl"))
    label = np.zeros((height, width), dtype=np.uint8)
    for _ in range(2):
        cls = int(rng.integers(1, 21))
        y0, x0 = int(rng.integers(3, height // 2)), int(rng.integers(3, width // 2))
        y1, x1 = int(rng.integers(y0 + 6, height - 2)), int(rng.integers(x0 + 6, width - 2))
        if border:
            label[y0 - 2 : y1 + 2, x0 - 2 : x1 + 2] = 255
        label[y0:y1, x0:x1] = cls
    return label


def _palette_png(label: np.ndarray) -> bytes:
    image = Image.fromarray(label)  # "L"; putpalette turns it into a "P" image with the same indices
    image.putpalette([v for rgb in voc_palette(256) for v in rgb])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 1336694400  # 11 May 2012
    archive.addfile(info, io.BytesIO(data))


def _add_dir(archive: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name.rstrip("/"))
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    archive.addfile(info)


@dataclass
class FakeArchive:
    """A fake dataset archive (VOC's tar, SBD's tgz) and what is in it."""

    archive: Path
    splits: dict[str, list[str]]
    labels: dict[str, np.ndarray]
    images: dict[str, bytes] = field(repr=False)


def build_voc(
    dest: Path,
    train: list[str] | None = None,
    val: list[str] | None = None,
    size: tuple[int, int] = (48, 64),
    corrupt: dict[str, str] | None = None,
) -> FakeArchive:
    """Write `VOCtrainval_11-May-2012.tar` (VOCdevkit/VOC2012/...) into `dest`.

    `size` is (height, width). `corrupt` maps an id to a defect: "label_size" (label 1 px too narrow),
    "label_rgb" (label saved as RGB colours), "image_truncated" (JPEG cut in half),
    "image_bomb" (a JPEG header claiming 30000x30000).
    """
    train = list(VOC_TRAIN if train is None else train)
    val = list(VOC_VAL if val is None else val)
    corrupt = corrupt or {}
    root = "VOCdevkit/VOC2012"
    labels: dict[str, np.ndarray] = {}
    images: dict[str, bytes] = {}
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / VOC_TAR
    with tarfile.open(path, "w") as tar:
        for folder in ("", "/JPEGImages", "/SegmentationClass", "/SegmentationObject", "/ImageSets"):
            _add_dir(tar, root + folder)
        _add_dir(tar, f"{root}/ImageSets/Segmentation")
        # A detection-only image with no segmentation label: the converter must go by the lists.
        for sample_id in [*train, *val, "2007_000027"]:
            height, width = (size[1], size[0]) if sample_id == PORTRAIT_ID else size
            images[sample_id] = _jpeg(_image(sample_id, height, width))
            data = images[sample_id]
            if corrupt.get(sample_id) == "image_truncated":
                data = data[: len(data) // 2]
            elif corrupt.get(sample_id) == "image_bomb":
                from tests.support.bombs import jpeg_bomb

                data = jpeg_bomb()
            _add_bytes(tar, f"{root}/JPEGImages/{sample_id}.jpg", data)
            if sample_id == "2007_000027":
                continue
            label = _class_map(sample_id, height, width, border=True)
            labels[sample_id] = label
            png = _palette_png(label)
            if corrupt.get(sample_id) == "label_size":
                png = _palette_png(label[:, :-1].copy())
            elif corrupt.get(sample_id) == "label_rgb":
                rgb = np.asarray(voc_palette(256), dtype=np.uint8)[label]
                buffer = io.BytesIO()
                Image.fromarray(rgb).save(buffer, format="PNG")
                png = buffer.getvalue()
            _add_bytes(tar, f"{root}/SegmentationClass/{sample_id}.png", png)
        lists = {"train": train, "val": val, "trainval": sorted(train + val)}
        for split, ids in lists.items():
            _add_bytes(tar, f"{root}/ImageSets/Segmentation/{split}.txt", "".join(f"{i}\n" for i in ids).encode())
    return FakeArchive(archive=path, splits=lists, labels=labels, images=images)


def _gtcls_mat(segmentation: np.ndarray) -> bytes:
    """A MATLAB v5 file shaped like SBD's cls/*.mat: struct GTcls{Boundaries, Segmentation, CategoriesPresent}."""
    boundaries = np.empty((20, 1), dtype=object)
    for k in range(20):
        boundaries[k, 0] = scipy.sparse.csc_matrix((segmentation == k + 1).astype(np.uint8))
    present = np.unique(segmentation[segmentation > 0]).astype(np.uint8).reshape(-1, 1)
    struct = {"Boundaries": boundaries, "Segmentation": segmentation, "CategoriesPresent": present}
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"GTcls": struct}, format="5", do_compression=True)
    return buffer.getvalue()


def build_sbd(
    dest: Path,
    train: list[str] | None = None,
    val: list[str] | None = None,
    size: tuple[int, int] = (48, 64),
    corrupt: dict[str, str] | None = None,
) -> FakeArchive:
    """Write `benchmark.tgz` (benchmark_RELEASE/dataset/{img,cls,inst,train.txt,val.txt}) into `dest`.

    SBD labels have no 255 band. `corrupt` maps an id to "label_size" or "mat_garbage".
    """
    train = list(SBD_TRAIN if train is None else train)
    val = list(SBD_VAL if val is None else val)
    corrupt = corrupt or {}
    root = "benchmark_RELEASE/dataset"
    labels: dict[str, np.ndarray] = {}
    images: dict[str, bytes] = {}
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / SBD_TGZ
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for folder in ("benchmark_RELEASE", root, f"{root}/img", f"{root}/cls", f"{root}/inst"):
            _add_dir(tar, folder)
        for sample_id in sorted(set(train + val)):
            height, width = (size[1], size[0]) if sample_id == PORTRAIT_ID else size
            images[sample_id] = _jpeg(_image(sample_id, height, width))
            _add_bytes(tar, f"{root}/img/{sample_id}.jpg", images[sample_id])
            label = _class_map(sample_id, height, width, border=False)
            labels[sample_id] = label
            mat = _gtcls_mat(label[:-1].copy() if corrupt.get(sample_id) == "label_size" else label)
            if corrupt.get(sample_id) == "mat_garbage":
                mat = b"MATLAB 5.0 MAT-file, but not really" + bytes(64)
            _add_bytes(tar, f"{root}/cls/{sample_id}.mat", mat)
        _add_bytes(tar, f"{root}/train.txt", "".join(f"{i}\n" for i in train).encode())
        _add_bytes(tar, f"{root}/val.txt", "".join(f"{i}\n" for i in val).encode())
    return FakeArchive(archive=path, splits={"train": train, "val": val}, labels=labels, images=images)


# ----------------------------------------------------------------------------------------------- COCO

# (category id, name) for the categories the fixture uses: VOC ones plus non-VOC ones (toilet, book).
_COCO_CATEGORIES = [(1, "person"), (7, "train"), (17, "cat"), (18, "dog"), (62, "chair"), (70, "toilet"), (84, "book")]
COCO_SIZE = (48, 64)  # height, width of every fixture image


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE (as crowd annotations store it): column-major run lengths, zeros first."""
    flat = mask.astype(np.uint8).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"counts": [int(c) for c in counts], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _rect_polygon(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    """A rectangle polygon; pycocotools fills rows y0..y1-1 and columns x0..x1-1 for integer corners."""
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


# Per image: list of (category id, iscrowd, rectangles (x0, y0, x1, y1)). One instance can have several
# polygons (rectangles); crowd instances are stored as uncompressed RLE like the official files.
COCO_SCENES: dict[str, dict[int, list[tuple[int, int, list[tuple[int, int, int, int]]]]]] = {
    "train": {
        # person and chair overlap -> 255 there; a toilet (non-VOC) under the person stays person;
        # a crowd of people top-right -> 255.
        139: [
            (1, 0, [(4, 4, 44, 40)]),
            (62, 0, [(30, 20, 60, 46)]),
            (70, 0, [(0, 30, 20, 48)]),
            (1, 1, [(50, 0, 64, 16)]),
        ],
        # a cat made of two polygons, big enough to keep
        285: [(17, 0, [(0, 0, 30, 40), (30, 10, 60, 40)])],
        # a small dog only: 100 VOC pixels < 1000 -> dropped
        632: [(18, 0, [(10, 10, 20, 20)])],
        # only non-VOC objects -> nothing to learn from, dropped
        724: [(84, 0, [(0, 0, 64, 48)])],
        # no annotations at all
        776: [],
    },
    "val": {
        # two overlapping trains (same class: overlap stays train), a crowd toilet (non-VOC: background)
        785: [(7, 0, [(0, 0, 40, 40)]), (7, 0, [(20, 8, 60, 44)]), (70, 1, [(50, 30, 64, 48)])],
        # a chair: COCO 62 -> VOC 9
        872: [(62, 0, [(8, 4, 56, 44)])],
    },
}
_COCO_TO_VOC_FIXTURE = {1: 15, 7: 19, 17: 8, 18: 12, 62: 9}


def coco_file_name(image_id: int) -> str:
    return f"{image_id:012d}.jpg"


def _coco_expected(annotations: list[tuple[int, int, list[tuple[int, int, int, int]]]]) -> np.ndarray:
    """The documented rules, painted with plain numpy: VOC classes, different-class overlap -> 255,
    VOC-class crowd -> 255, everything else background."""
    height, width = COCO_SIZE
    owner = np.zeros((height, width), dtype=np.int32)  # 0 none, >0 VOC class, -1 conflict
    crowd = np.zeros((height, width), dtype=bool)
    for cat, iscrowd, rects in annotations:
        voc = _COCO_TO_VOC_FIXTURE.get(cat)
        if voc is None:
            continue
        mask = np.zeros((height, width), dtype=bool)
        for x0, y0, x1, y1 in rects:
            mask[y0:y1, x0:x1] = True
        if iscrowd:
            crowd |= mask
            continue
        owner[mask & (owner == 0)] = voc
        owner[mask & (owner > 0) & (owner != voc)] = -1
    label = owner.astype(np.uint8)
    label[owner == -1] = 255
    label[crowd] = 255
    return label


@dataclass
class FakeCOCO:
    """The three COCO zips and the expected coco-voc labels (None = the image must be dropped)."""

    annotations: Path
    train_images: Path
    val_images: Path
    expected: dict[str, dict[str, np.ndarray | None]]
    images: dict[str, bytes] = field(repr=False)


def build_coco(dest: Path, min_pixels: int = 1000, corrupt: dict[int, str] | None = None) -> FakeCOCO:
    """Write annotations_trainval2017.zip, train2017.zip and val2017.zip into `dest`.

    `corrupt` maps an image id to "image_size" (JSON says a different size than the JPEG has).
    """
    corrupt = corrupt or {}
    dest.mkdir(parents=True, exist_ok=True)
    height, width = COCO_SIZE
    categories = [{"id": cid, "name": name, "supercategory": "thing"} for cid, name in _COCO_CATEGORIES]
    expected: dict[str, dict[str, np.ndarray | None]] = {}
    images: dict[str, bytes] = {}
    ann_id = 1
    zips = {"train": dest / COCO_TRAIN_ZIP, "val": dest / COCO_VAL_ZIP}
    with zipfile.ZipFile(dest / COCO_ANN_ZIP, "w") as ann_zip:
        for split, scenes in COCO_SCENES.items():
            doc: dict = {"info": {"year": 2017}, "licenses": [], "images": [], "annotations": [], "categories": []}
            doc["categories"] = categories
            expected[split] = {}
            with zipfile.ZipFile(zips[split], "w") as image_zip:
                image_zip.writestr(f"{split}2017/", b"")
                for image_id, annotations in scenes.items():
                    name = coco_file_name(image_id)
                    jpeg = _jpeg(_image(str(image_id), height, width))
                    images[Path(name).stem] = jpeg
                    image_zip.writestr(f"{split}2017/{name}", jpeg)
                    json_h = height + 2 if corrupt.get(image_id) == "image_size" else height
                    doc["images"].append({"id": image_id, "file_name": name, "height": json_h, "width": width})
                    for cat, iscrowd, rects in annotations:
                        if iscrowd:
                            mask = np.zeros((height, width), dtype=bool)
                            for x0, y0, x1, y1 in rects:
                                mask[y0:y1, x0:x1] = True
                            segmentation: list | dict = _uncompressed_rle(mask)
                        else:
                            segmentation = [_rect_polygon(*rect) for rect in rects]
                        area = float(sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in rects))
                        x0, y0 = min(r[0] for r in rects), min(r[1] for r in rects)
                        x1, y1 = max(r[2] for r in rects), max(r[3] for r in rects)
                        doc["annotations"].append(
                            {
                                "id": ann_id,
                                "image_id": image_id,
                                "category_id": cat,
                                "segmentation": segmentation,
                                "area": area,
                                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                                "iscrowd": iscrowd,
                            }
                        )
                        ann_id += 1
                    label = _coco_expected(annotations)
                    keep = int(((label > 0) & (label < 255)).sum()) >= min_pixels
                    expected[split][Path(name).stem] = label if keep else None
            ann_zip.writestr(f"annotations/instances_{split}2017.json", json.dumps(doc))
            # The real zip also carries captions and keypoints; the converter must pick the right file.
            ann_zip.writestr(f"annotations/captions_{split}2017.json", json.dumps({"annotations": []}))
    return FakeCOCO(dest / COCO_ANN_ZIP, zips["train"], zips["val"], expected, images)


def fixture_manifest(
    dest: Path, name: str, files: dict[str, Path], base_url: str | None = None, splits: dict[str, int] | None = None
) -> Path:
    """A copy of the packaged manifest `name` that describes the fixture files instead of the real ones.

    Same keys and `login`/`extract`/`optional` flags; file names, sizes and sha256 sums of the fixtures
    (sources without a file in `files` are left out); URLs on `base_url` (a loopback server) or on a
    closed local port when the test passes the files directly; none for a source behind a login.
    """
    import hashlib

    from refine_cli.data.acquire.manifest import load_manifest

    real = load_manifest(name)
    base = (base_url or "http://127.0.0.1:9").rstrip("/")
    lines = [f'name = "{real.name}"', f'title = "{real.title} (test fixture)"', 'licence = "test data"', "", "[splits]"]
    lines.extend(f"{split} = {count}" for split, count in (splits or {}).items())
    for source in real.sources:
        path = files.get(source.key)
        if path is None:
            continue
        urls = "[]" if source.login else f'["{base}/{path.name}"]'
        lines += [
            "",
            "[[sources]]",
            f'key = "{source.key}"',
            f'file = "{path.name}"',
            f"urls = {urls}",
            f"size = {path.stat().st_size}",
            f'sha256 = "{hashlib.sha256(path.read_bytes()).hexdigest()}"',
            *(f"{flag} = {str(getattr(source, flag)).lower()}" for flag in ("login", "extract", "optional")),
        ]
    manifest = dest / f"{name}-fixture.toml"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest
