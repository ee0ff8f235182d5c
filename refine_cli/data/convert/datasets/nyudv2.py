"""NYUDv2 labelled set -> unified `nyudv2`: 40 classes (Gupta et al. 2013), 255 = ignore; 795 train / 654 val.

Sources: `nyu_depth_v2_labeled.mat` (MATLAB v7.3, i.e. HDF5, 2.8 GB), `splits.mat` (1-based
`trainNdxs`/`testNdxs`) and `classMapping40.mat` (`mapClass`: NYU label i -> 40-class id, 1-based).

Why it looks the way it does:
- The .mat is never loaded whole: `plan()` only reads shapes, and each worker opens the HDF5 file
  itself and reads one frame (h5py handles must not cross a fork).
- MATLAB stores column-major, so h5py sees images as N x 3 x W x H and labels as N x W x H; we
  transpose back to H x W (x 3). Getting this wrong gives 640-high images, which the size checks catch.
- Labels: 0 (unlabeled) -> 255, NYU id i -> mapClass[i-1] - 1, i.e. 0 = wall ... 39 = otherprop,
  as LW-RefineNet stores them. One lookup table, no chained in-place remaps.
- Images are raw RGB in the source, so they are written as lossless PNG.
- `crop_border` removes the white frame around every NYU image (the RGB was registered to the depth
  camera); the "lw" preset crops 6 px top/bottom, 7 px left and 8 px right, giving the 625x468 size of
  LW-RefineNet's preprocessed images (their exact offsets are not published).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.class_tables import voc_palette
from refine_cli.data.convert.base import ConvertedSample, Converter, DatasetSpec, Plan, SampleError, WorkItem
from refine_cli.data.convert.registry import register_converter
from refine_cli.errors import RefineError

NYU40_CLASSES: list[str] = (
    "wall,floor,cabinet,bed,chair,sofa,table,door,window,bookshelf,picture,counter,blinds,desk,shelves,curtain,"
    "dresser,pillow,mirror,floor mat,clothes,ceiling,books,refridgerator,television,paper,towel,shower curtain,"
    "box,whiteboard,person,night stand,toilet,sink,lamp,bathtub,bag,otherstructure,otherfurniture,otherprop"
).split(",")
NUM_NYU_LABELS = 894
# (top, right, bottom, left) pixels; "lw" turns 640x480 into LW-RefineNet's 625x468.
CROP_PRESETS: dict[str, tuple[int, int, int, int]] = {"none": (0, 0, 0, 0), "lw": (6, 8, 6, 7)}


def parse_crop(value: str | int | tuple[int, ...] | None) -> tuple[int, int, int, int]:
    """'none', 'lw', 'N' (all sides) or 'T,R,B,L' -> (top, right, bottom, left) pixels to remove."""
    if value is None:
        return CROP_PRESETS["none"]
    if isinstance(value, tuple):
        parts: list[str] = [str(v) for v in value]
    else:
        text = str(value).strip().lower()
        if text in CROP_PRESETS:
            return CROP_PRESETS[text]
        parts = [p.strip() for p in text.split(",")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) == 1:
        numbers *= 4
    if len(numbers) != 4 or min(numbers) < 0:
        raise RefineError(
            f"invalid --crop-border {value!r}",
            hint="use 'none', 'lw' (625x468 like LW-RefineNet), N pixels per side, or top,right,bottom,left",
        )
    return numbers[0], numbers[1], numbers[2], numbers[3]


def nyu40_lut(map_class: np.ndarray) -> np.ndarray:
    """NYU label (0..894) -> unified class: 0 -> 255, i -> map_class[i-1] - 1."""
    lut = np.full(NUM_NYU_LABELS + 1, 255, dtype=np.uint8)
    lut[1:] = map_class.astype(np.int64) - 1
    return lut


def load_class_mapping(path: Path) -> np.ndarray:
    """`mapClass` from classMapping40.mat as 894 values in 1..40; RefineError naming the file otherwise."""
    import scipy.io

    try:
        data = scipy.io.loadmat(path, variable_names=["mapClass"])
    except (OSError, ValueError, NotImplementedError, scipy.io.matlab.MatReadError) as error:
        raise RefineError(f"cannot read {path}: {error}", hint="download classMapping40.mat again") from None
    if "mapClass" not in data:
        raise RefineError(f"{path} has no variable 'mapClass'", hint="this is not classMapping40.mat")
    mapping = np.asarray(data["mapClass"]).ravel()
    if mapping.size != NUM_NYU_LABELS or mapping.min() < 1 or mapping.max() > len(NYU40_CLASSES):
        raise RefineError(
            f"{path}: mapClass has {mapping.size} entries in {mapping.min()}..{mapping.max()}, "
            f"expected {NUM_NYU_LABELS} entries in 1..{len(NYU40_CLASSES)}",
            hint="use classMapping40.mat from ankurhanda/nyuv2-meta-data",
        )
    return mapping


def load_splits(path: Path, frames: int) -> dict[str, list[int]]:
    """1-based frame numbers per split from splits.mat, checked against the number of frames."""
    import scipy.io

    try:
        data = scipy.io.loadmat(path, variable_names=["trainNdxs", "testNdxs"])
    except (OSError, ValueError, NotImplementedError, scipy.io.matlab.MatReadError) as error:
        raise RefineError(f"cannot read {path}: {error}", hint="download splits.mat again") from None
    splits: dict[str, list[int]] = {}
    for key, split in (("trainNdxs", "train"), ("testNdxs", "val")):
        if key not in data:
            raise RefineError(f"{path} has no variable {key!r}", hint="this is not the NYUDv2 splits.mat")
        numbers = [int(v) for v in np.asarray(data[key]).ravel()]
        if not numbers or min(numbers) < 1 or max(numbers) > frames:
            raise RefineError(f"{path}: {key} must hold 1-based frame numbers in 1..{frames}")
        splits[split] = sorted(numbers)
    overlap = set(splits["train"]) & set(splits["val"])
    if overlap:
        raise RefineError(f"{path}: {len(overlap)} frames are in both trainNdxs and testNdxs")
    return splits


def _open_labeled(path: Path):
    """Open nyu_depth_v2_labeled.mat read-only; RefineError if it is not the v7.3 (HDF5) file."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except FileNotFoundError:
        raise RefineError(f"missing file {path}") from None
    except OSError as error:
        raise RefineError(
            f"{path} is not a MATLAB v7.3 (HDF5) file: {error}",
            hint="download nyu_depth_v2_labeled.mat again; the 2.8 GB file is often truncated",
        ) from None
    for key in ("images", "labels"):
        if key not in handle:
            handle.close()
            raise RefineError(f"{path} has no dataset {key!r}", hint="expected nyu_depth_v2_labeled.mat")
    return handle


@functools.lru_cache(maxsize=2)
def _worker_handle(path: str):
    """One open HDF5 handle per worker process and file, reused across the frames it converts."""
    import h5py

    return h5py.File(path, "r")


@register_converter
class NYUDv2Converter(Converter):
    """NYUDv2 labelled 1,449 frames: 795 train / 654 val (the official test set), 40 classes."""

    name = "nyudv2"
    manifest = "nyudv2"
    version = "1"

    sources = ("labeled", "splits", "mapping")

    def plan(self, sources: dict[str, Path], options: dict[str, Any]) -> Plan:
        crop = parse_crop(options.get("crop_border"))
        mat = _find_file(Path(sources["labeled"]), "nyu_depth_v2_labeled.mat")
        lut = nyu40_lut(load_class_mapping(_find_file(Path(sources["mapping"]), "classMapping40.mat")))
        with _open_labeled(mat) as handle:
            images, labels = handle["images"], handle["labels"]
            if images.ndim != 4 or images.shape[1] != 3 or labels.shape != (images.shape[0], *images.shape[2:]):
                raise RefineError(
                    f"{mat}: images {images.shape} and labels {labels.shape} do not match the NYU layout "
                    "(N x 3 x W x H and N x W x H as h5py sees MATLAB's arrays)"
                )
            frames, width, height = labels.shape
        if crop[0] + crop[2] >= height or crop[1] + crop[3] >= width:
            raise RefineError(f"--crop-border {crop} leaves nothing of the {width}x{height} images")
        split_numbers = load_splits(_find_file(Path(sources["splits"]), "splits.mat"), frames)
        splits = {split: [f"{n:06d}" for n in numbers] for split, numbers in split_numbers.items()}
        items = [
            WorkItem(f"{n:06d}", (str(mat), n - 1, lut, crop)) for numbers in split_numbers.values() for n in numbers
        ]
        spec = DatasetSpec(
            name="nyudv2",
            classes=list(NYU40_CLASSES),
            palette=voc_palette(len(NYU40_CLASSES)),
            extra={
                "source_label_mapping": "0 (unlabeled) -> 255; NYU id i -> classMapping40 mapClass[i] - 1",
                "sample_ids": "6-digit 1-based frame numbers of nyu_depth_v2_labeled.mat (as LW-RefineNet's lists)",
                "crop_border": {"top": crop[0], "right": crop[1], "bottom": crop[2], "left": crop[3]},
                "image_size_wh": [width - crop[1] - crop[3], height - crop[0] - crop[2]],
                "source_splits": {"train": "trainNdxs", "val": "testNdxs (the official test set; papers call it val)"},
            },
        )
        return Plan(spec=spec, splits=splits, items=items)

    @staticmethod
    def convert(item: WorkItem) -> ConvertedSample:
        import cv2

        mat, index, lut, (top, right, bottom, left) = item.args
        try:
            handle = _worker_handle(mat)
            image = np.asarray(handle["images"][index]).transpose(2, 1, 0)  # 3 x W x H -> H x W x 3
            label = np.asarray(handle["labels"][index]).T  # W x H -> H x W
        except (OSError, KeyError, ValueError) as error:
            raise SampleError(f"cannot read frame {index + 1} of {mat}: {error}") from None
        if int(label.max(initial=0)) > NUM_NYU_LABELS:
            raise SampleError(f"frame {index + 1} of {mat} has label {int(label.max())} > {NUM_NYU_LABELS}")
        height, width = label.shape
        image = image[top : height - bottom, left : width - right]
        label = lut[label[top : height - bottom, left : width - right]]
        ok, png = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
        if not ok:
            raise SampleError(f"could not encode frame {index + 1} of {mat} as PNG")
        return ConvertedSample(label=label, image_bytes=png.tobytes(), image_ext="png")


def _find_file(source: Path, name: str) -> Path:
    """A source is the file itself or a folder holding it (e.g. after a manual download)."""
    if source.is_file():
        return source
    candidate = source / name
    if candidate.is_file():
        return candidate
    raise RefineError(f"missing file {candidate}", hint=f"download {name} again or pass it with --archives")
