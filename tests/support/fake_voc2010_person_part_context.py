"""Miniature PASCAL VOC 2010, Person-Part and PASCAL-Context archives in their official layouts.

Only the parts our converters read are built, but with the exact member names of the real downloads:

* `VOCtrainval_03-May-2010.tar`: `VOCdevkit/VOC2010/JPEGImages/<id>.jpg` and
  `VOCdevkit/VOC2010/ImageSets/Main/{train,val,trainval}.txt` (plus a few unrelated members).
* `pascal_person_part.zip`: `pascal_person_part/pascal_person_part_gt/<id>.png` and
  `pascal_person_part/pascal_person_part_trainval_list/{train,val}.txt` (DeepLab list lines) and
  `{train,val}_id.txt`, with the macOS `.DS_Store` / `__MACOSX/` litter the real zip carries.
* PASCAL-Context `trainval.tar.gz`: `trainval/<id>.mat` holding `LabelMap` (1-based ids into the
  459-name `labels.txt`) and `labels.txt` ("id: name" lines).

Tests pass label arrays in, so they know the exact expected output value at every pixel.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from refine_cli.class_tables import voc_palette

VOC2010_TAR = "VOCtrainval_03-May-2010.tar"
PERSON_PART_ZIP = "pascal_person_part.zip"
CONTEXT_TAR = "trainval.tar.gz"

# The 59 PASCAL-Context classes at their ids in the official 459-name labels.txt, spelled as labels.txt
# spells them (docs/dataset-facts.md appendix A). Other ids get placeholder names: the converter only relies on these.
CONTEXT_LABELS_TXT_NAMES: dict[int, str] = {
    2: "aeroplane", 9: "bag", 18: "bed", 19: "bedclothes", 22: "bench", 23: "bicycle", 25: "bird",
    31: "boat", 33: "book", 34: "bottle", 44: "building", 45: "bus", 46: "cabinet", 59: "car", 65: "cat",
    68: "ceiling", 72: "chair", 80: "cloth", 85: "computer", 98: "cow", 104: "cup", 105: "curtain",
    113: "dog", 115: "door", 144: "fence", 158: "floor", 159: "flower", 162: "food", 187: "grass",
    189: "ground", 207: "horse", 220: "keyboard", 232: "light", 258: "motorbike", 259: "mountain",
    260: "mouse", 284: "person", 295: "plate", 296: "platform", 308: "pottedplant", 324: "road",
    326: "rock", 347: "sheep", 349: "shelves", 354: "sidewalk", 355: "sign", 360: "sky", 366: "snow",
    368: "sofa", 397: "table", 415: "track", 416: "train", 420: "tree", 424: "truck", 427: "tvmonitor",
    440: "wall", 445: "water", 454: "window", 458: "wood",
}  # fmt: skip


def jpeg_bytes(width: int, height: int, seed: int = 0) -> bytes:
    """A small real JPEG (smooth gradient plus noise) of the given size."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), (xx + yy) % 256], axis=-1)
    rgb = np.clip(rgb + rng.integers(0, 32, size=rgb.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def png_bytes(array: np.ndarray, mode: str = "P", palette: Iterable[int] | None = None) -> bytes:
    """Encode `array` as PNG: 'P' (indices + a palette, like VOC masks), 'L' (grey) or 'RGB'."""
    from PIL import Image

    if mode == "RGB":
        image = Image.fromarray(np.asarray(array, dtype=np.uint8), mode="RGB")
    else:
        image = Image.fromarray(np.asarray(array, dtype=np.uint8), mode="L")
        if mode == "P":  # putpalette turns an 'L' image into 'P' and keeps the values as indices
            image.putpalette(list(palette) if palette is not None else _voc_flat_palette())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _voc_flat_palette() -> list[int]:
    return [value for rgb in voc_palette(256) for value in rgb]


def write_tar(path: Path, members: Mapping[str, bytes], compression: str = "") -> Path:
    """A tar (compression '' or 'gz') whose members appear in the given order, with folder entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folders: list[str] = []
    for name in members:
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in folders:
                folders.append(folder)
    with tarfile.open(path, f"w:{compression}" if compression else "w") as archive:
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            archive.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, members: Mapping[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def build_voc2010_tar(
    out_dir: Path,
    train: list[str],
    val: list[str],
    sizes: Mapping[str, tuple[int, int]] | None = None,
    default_size: tuple[int, int] = (64, 48),
    omit_images: Iterable[str] = (),
    corrupt_images: Iterable[str] = (),
) -> Path:
    """`VOCtrainval_03-May-2010.tar` with JPEGs for `train + val` (sizes are (width, height))."""
    sizes = dict(sizes or {})
    omit, corrupt = set(omit_images), set(corrupt_images)
    root = "VOCdevkit/VOC2010"
    members: dict[str, bytes] = {}
    for index, sample_id in enumerate(sorted(set(train) | set(val))):
        if sample_id in omit:
            continue
        width, height = sizes.get(sample_id, default_size)
        data = b"not a jpeg at all" if sample_id in corrupt else jpeg_bytes(width, height, seed=index)
        members[f"{root}/JPEGImages/{sample_id}.jpg"] = data
    # An image outside both splits (the real tar has test-less extras in Main lists of other tasks).
    members[f"{root}/JPEGImages/2010_009999.jpg"] = jpeg_bytes(*default_size, seed=99)
    members[f"{root}/ImageSets/Main/train.txt"] = "".join(f"{i}\n" for i in train).encode()
    members[f"{root}/ImageSets/Main/val.txt"] = "".join(f"{i}\n" for i in val).encode()
    members[f"{root}/ImageSets/Main/trainval.txt"] = "".join(f"{i}\n" for i in sorted(train + val)).encode()
    members[f"{root}/ImageSets/Main/person_train.txt"] = "".join(f"{i}  1\n" for i in train).encode()
    members[f"{root}/ImageSets/Segmentation/train.txt"] = "".join(f"{i}\n" for i in train[:1]).encode()
    return write_tar(out_dir / VOC2010_TAR, members)


def build_person_part_zip(
    out_dir: Path,
    train: Mapping[str, np.ndarray],
    val: Mapping[str, np.ndarray],
    mode: str = "P",
    id_lists: bool = True,
    omit_labels: Iterable[str] = (),
    raw_labels: Mapping[str, bytes] | None = None,
) -> Path:
    """`pascal_person_part.zip`: label PNGs (values as given) and the DeepLab-style split lists.

    `mode` is the PNG mode of the labels ('P' like the real files, 'L', or 'RGB' for VOC-coloured
    renderings, in which case arrays are class indices rendered through the VOC colour map).
    `raw_labels` replaces the PNG bytes of some ids (to test unreadable files).
    """
    base = "pascal_person_part"
    members: dict[str, bytes] = {f"{base}/.DS_Store": b"\x00\x00\x00\x01Bud1", f"__MACOSX/{base}/._.DS_Store": b"x"}
    flat = np.asarray(_voc_flat_palette(), dtype=np.uint8).reshape(256, 3)
    omit = set(omit_labels)
    for sample_id, label in {**train, **val}.items():
        if sample_id in omit:
            continue
        if raw_labels and sample_id in raw_labels:
            data = raw_labels[sample_id]
        elif mode == "RGB":
            data = png_bytes(flat[np.asarray(label, dtype=np.uint8)], mode="RGB")
        else:
            data = png_bytes(label, mode=mode)
        members[f"{base}/pascal_person_part_gt/{sample_id}.png"] = data
    lists = f"{base}/pascal_person_part_trainval_list"
    for split, ids in (("train", list(train)), ("val", list(val))):
        members[f"{lists}/{split}.txt"] = "".join(
            f"/JPEGImages/{i}.jpg /SegmentationPart/{i}.png\n" for i in ids
        ).encode()
        if id_lists:
            members[f"{lists}/{split}_id.txt"] = "".join(f"{i}\n" for i in ids).encode()
    members[f"{lists}/.DS_Store"] = b"\x00\x00\x00\x01Bud1"
    return write_zip(out_dir / PERSON_PART_ZIP, members)


def context_labels_txt(overrides: Mapping[int, str] | None = None) -> bytes:
    """A 459-line labels.txt ("id: name"): the real names of the 59 classes, placeholders elsewhere."""
    names = {i: f"other class {i}" for i in range(1, 460)}
    names.update(CONTEXT_LABELS_TXT_NAMES)
    names.update(overrides or {})
    return "".join(f"{i}: {names[i]}\n" for i in range(1, 460)).encode()


def mat_bytes(variables: Mapping[str, np.ndarray]) -> bytes:
    """A MATLAB v5 .mat file, as scipy.io.loadmat reads the real annotation files."""
    import scipy.io

    buffer = io.BytesIO()
    scipy.io.savemat(buffer, dict(variables), do_compression=True)
    return buffer.getvalue()


def build_context_tar(
    out_dir: Path,
    label_maps: Mapping[str, np.ndarray],
    labels_txt: bytes | None = None,
    raw_mats: Mapping[str, bytes] | None = None,
) -> Path:
    """PASCAL-Context `trainval.tar.gz`: `trainval/<id>.mat` (`LabelMap`, uint16) and `labels.txt`."""
    members: dict[str, bytes] = {}
    for sample_id, label_map in label_maps.items():
        if raw_mats and sample_id in raw_mats:
            members[f"trainval/{sample_id}.mat"] = raw_mats[sample_id]
        else:
            members[f"trainval/{sample_id}.mat"] = mat_bytes({"LabelMap": np.asarray(label_map, dtype=np.uint16)})
    members["labels.txt"] = context_labels_txt() if labels_txt is None else labels_txt
    return write_tar(out_dir / CONTEXT_TAR, members, compression="gz")
