"""A miniature SUN RGB-D in the EXACT layout of the official release (SUNRGBD.zip + SUNRGBDtoolbox.zip).

- SUNRGBD.zip: `SUNRGBD/<sensor>/<set>/<frame>/image/<name>.jpg` with the frame's depth/, depth_bfx/,
  annotation2Dfinal/index.json, intrinsics.txt and scene.txt beside it, for frames of all four sensors
  (real folder names, different image sizes per sensor as in the data).
- SUNRGBDtoolbox.zip: `SUNRGBDtoolbox/Metadata/SUNRGBDMeta.mat` (MATLAB v5 struct array, `rgbpath` with the
  authors' '/n/fs/sun3d/data/SUNRGBD/' prefix), `Metadata/SUNRGBD2Dseg.mat` (MATLAB v7.3: struct array
  `SUNRGBD2Dseg` whose `seglabel` maps are stored column-major, so h5py sees W x H), `Metadata/seg37list.mat`
  and `traintestSUNRGBD/allsplit.mat` (`alltrain`, `alltest`: frame folders). `swap_formats=True` writes the
  two small .mat files as v7.3 and SUNRGBD2Dseg.mat as v5 instead ("HDF5 or not").

Labels are painted with SOURCE values (0 = unlabeled, 1..37) at known places; one frame is in no split.

`build_preprocessed` writes the preprocessed release (ankurhanda/sunrgbd-meta-data) instead: flat
`img-NNNNNN.jpg` in SUNRGBD-test_images.tgz and SUNRGBD-train_images.tgz (numbered from 1 in each) and flat
grey `img-NNNNNN.png` in sunrgbd_train_test_labels.tar.gz (test labels from 1, train labels from 5,051).
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io

from tests.support.fake_nyu_ade20k_cityscapes import _image, _jpeg, _png, paint_patches
from tests.support.matlab_v73 import Cell, StructArray, write_mat73

PREFIX = "/n/fs/sun3d/data/SUNRGBD/"
SEG37 = (
    "wall floor cabinet bed chair sofa table door window bookshelf picture counter blinds desk shelves curtain "
    "dresser pillow mirror floor_mat clothes ceiling books fridge tv paper towel shower_curtain box whiteboard "
    "person night_stand toilet sink lamp bathtub bag"
).split()
# (frame folder, image name, (height, width), split in allsplit.mat or None)
FRAMES = [
    ("kv1/NYUdata/NYU0001", "NYU0001.jpg", (48, 64), "train"),
    ("kv2/kinect2data/000065_2014-05-16_20-14-38_260595134347_rgbf000121-resize", "0000121.jpg", (53, 73), "test"),
    ("realsense/lg/2014_10_24-13_43_51-1311000073", "0000097.jpg", (47, 63), "train"),
    ("xtion/sun3ddata/mit_76_studyroom/76-1studyroom2/0002111-000070763319", "0002111-000070763319.jpg",
     (48, 64), "test"),
    ("kv1/b3dodata/img_0063", "img_0063.jpg", (42, 56), None),
    ("kv2/align_kv2/2014-12-11_08-57-10_260595134347_rgbf000051-resize", "0000051.jpg", (53, 73), "train"),
]  # fmt: skip
PAINTED = [0, 1, 2, 37, 20, 36, 31, 5]


@dataclass
class FakeSUNRGBD:
    images: Path
    toolbox: Path
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # sample id -> source label (H x W)
    splits: dict[str, list[str]] = field(default_factory=dict)


def _struct_array(rows: list[dict]) -> np.ndarray:
    """A 1xN MATLAB struct array as scipy.io.savemat writes it."""
    array = np.zeros((1, len(rows)), dtype=[(key, object) for key in rows[0]])
    for index, row in enumerate(rows):
        for key, value in row.items():
            array[0, index][key] = value
    return array


def _cell(strings: list[str]) -> np.ndarray:
    cell = np.empty((len(strings), 1), dtype=object)
    for index, text in enumerate(strings):
        cell[index, 0] = text
    return cell


def _mat_bytes(variables: dict) -> bytes:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables)
    return buffer.getvalue()


def build_sunrgbd(dest: Path, swap_formats: bool = False, bad: dict[str, str] | None = None) -> FakeSUNRGBD:
    """Write SUNRGBD.zip and SUNRGBDtoolbox.zip into `dest`; `bad` {sample id: 'wrong-size' | 'value-99'}."""
    dest.mkdir(parents=True, exist_ok=True)
    fake = FakeSUNRGBD(dest / "SUNRGBD.zip", dest / "SUNRGBDtoolbox.zip", splits={"train": [], "val": []})
    meta, labels = [], []
    with zipfile.ZipFile(fake.images, "w") as archive:
        archive.writestr("SUNRGBD/", b"")
        for index, (folder, name, (height, width), split) in enumerate(FRAMES):
            sample_id = f"{index + 1:05d}"
            values = PAINTED[index % 3 :] + PAINTED[: index % 3]
            label = paint_patches(height, width, values, fill=index % 2 + 3, dtype=np.uint16)
            if (bad or {}).get(sample_id) == "value-99":
                label[-2, -2] = 99
            fake.labels[sample_id] = label
            stored = label[:-1] if (bad or {}).get(sample_id) == "wrong-size" else label
            labels.append({"seglabel": stored, "seglabelall": stored.astype(np.float64)})
            if split:
                fake.splits["train" if split == "train" else "val"].append(sample_id)
            base = f"SUNRGBD/{folder}"
            archive.writestr(f"{base}/image/{name}", _jpeg(_image(folder, height, width)))
            archive.writestr(f"{base}/depth/{name[:-4]}.png", _png(np.zeros((height, width), np.uint16)))
            archive.writestr(f"{base}/depth_bfx/{name[:-4]}.png", _png(np.zeros((height, width), np.uint16)))
            archive.writestr(f"{base}/annotation2Dfinal/index.json", json.dumps({"frames": [], "objects": []}))
            archive.writestr(f"{base}/intrinsics.txt", "529.5 0 365\n0 529.5 265\n0 0 1\n")
            archive.writestr(f"{base}/scene.txt", "bedroom")
            depth = f"{name[:-4]}.png"
            meta.append({"sequenceName": PREFIX + folder, "rgbpath": f"{PREFIX}{folder}/image/{name}",
                         "rgbname": name, "depthpath": f"{PREFIX}{folder}/depth/{depth}", "depthname": depth,
                         "sensorType": folder.split("/")[0], "valid": 1.0})  # fmt: skip
    train = [PREFIX + f for f, _, _, s in FRAMES if s == "train"]
    test = [PREFIX + f for f, _, _, s in FRAMES if s == "test"]
    with zipfile.ZipFile(fake.toolbox, "w") as archive:
        archive.writestr("SUNRGBDtoolbox/readData/read3dPoints.m", "function points = read3dPoints(data)\n")
        small = {
            "Metadata/seg37list.mat": {"seg37list": SEG37},
            "traintestSUNRGBD/allsplit.mat": {"alltrain": train, "alltest": test,
                                              "trainvalsplit": {"train": train[:-1], "val": train[-1:]}},
        }  # fmt: skip
        tmp = dest / "tmp.mat"
        if swap_formats:
            meta_v73 = {"SUNRGBDMeta": StructArray([{k: v for k, v in row.items()} for row in meta])}
            for path, variables in {"Metadata/SUNRGBDMeta.mat": meta_v73, **small}.items():
                converted = {k: Cell(v) if isinstance(v, list) else v for k, v in variables.items()}
                converted = {k: {kk: Cell(vv) for kk, vv in v.items()} if isinstance(v, dict) else v
                             for k, v in converted.items()}  # fmt: skip
                archive.writestr(f"SUNRGBDtoolbox/{path}", write_mat73(tmp, converted).read_bytes())
            archive.writestr("SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat",
                             _mat_bytes({"SUNRGBD2Dseg": _struct_array(labels)}))  # fmt: skip
        else:
            archive.writestr(
                "SUNRGBDtoolbox/Metadata/SUNRGBDMeta.mat", _mat_bytes({"SUNRGBDMeta": _struct_array(meta)})
            )
            for path, variables in small.items():
                converted = {k: _cell(v) if isinstance(v, list) else {kk: _cell(vv) for kk, vv in v.items()}
                             for k, v in variables.items()}  # fmt: skip
                archive.writestr(f"SUNRGBDtoolbox/{path}", _mat_bytes(converted))
            seg = write_mat73(tmp, {"SUNRGBD2Dseg": StructArray(labels)})
            archive.writestr("SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat", seg.read_bytes())
        tmp.unlink(missing_ok=True)
    return fake


@dataclass
class FakePreprocessed:
    train_images: Path
    test_images: Path
    labels: Path
    sources: dict[str, np.ndarray] = field(default_factory=dict)  # sample id (label number) -> source label
    splits: dict[str, list[str]] = field(default_factory=dict)


# (split, image number in its archive, (height, width)): sizes differ per sensor, as in the release
PREPROCESSED = [("val", 1, (48, 64)), ("val", 2, (53, 73)), ("val", 3, (47, 63)),
                ("train", 1, (53, 73)), ("train", 2, (48, 64)), ("train", 3, (42, 56))]  # fmt: skip


def _tgz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def build_preprocessed(dest: Path, bad: dict[str, str] | None = None) -> FakePreprocessed:
    """The three files of the preprocessed release in `dest`; `bad` {label number: 'missing' | 'value-40' | 'rgb'}.

    One label (img-000004.png) has no image, as a check that such labels are counted, not converted.
    """
    dest.mkdir(parents=True, exist_ok=True)
    images: dict[str, dict[str, bytes]] = {"train": {}, "val": {}}
    labels: dict[str, bytes] = {}
    fake = FakePreprocessed(dest / "SUNRGBD-train_images.tgz", dest / "SUNRGBD-test_images.tgz",
                            dest / "sunrgbd_train_test_labels.tar.gz", splits={"train": [], "val": []})  # fmt: skip
    for index, (split, number, (height, width)) in enumerate(PREPROCESSED):
        label_number = number + (5050 if split == "train" else 0)
        sample_id = f"{label_number:06d}"
        values = PAINTED[index % 3 :] + PAINTED[: index % 3]
        label = paint_patches(height, width, values, fill=index % 2 + 3)
        kind = (bad or {}).get(sample_id)
        if kind == "value-40":
            label[-2, -2] = 40
        fake.sources[sample_id] = label
        fake.splits[split].append(sample_id)
        images[split][f"img-{number:06d}.jpg"] = _jpeg(_image(sample_id, height, width))
        if kind != "missing":
            labels[f"img-{sample_id}.png"] = _png(np.stack([label] * 3, -1) if kind == "rgb" else label)
    labels["img-000004.png"] = _png(paint_patches(40, 40, [1], fill=2))
    _tgz(fake.train_images, images["train"])
    _tgz(fake.test_images, images["val"])
    _tgz(fake.labels, dict(sorted(labels.items())))
    return fake
