"""SUN RGB-D (Song et al., CVPR 2015) -> unified `sunrgbd`: 37 classes, 255 = ignore; 5,285 train / 5,050 val.

Sources, as the official release has them (rgbd.cs.princeton.edu): SUNRGBD.zip (the frames of the four
sensors, `SUNRGBD/<sensor>/<set>/<frame>/image/<name>.jpg`) and SUNRGBDtoolbox.zip with
`Metadata/SUNRGBDMeta.mat` (one struct per frame; `rgbpath` names its image), `Metadata/SUNRGBD2Dseg.mat`
(MATLAB v7.3: `SUNRGBD2Dseg(i).seglabel`, the 37-class label map of frame i, in SUNRGBDMeta's order),
`Metadata/seg37list.mat` (the class names) and `traintestSUNRGBD/allsplit.mat` (`alltrain` / `alltest`:
the frame folders of the benchmark's 5,285 / 5,050 split). This is the route ESANet's prepare script and
the original RefineNet (Table 7) used. RGB only: depth stays out, as in the paper.

Why it looks the way it does:
- SUNRGBD2Dseg.mat needs 64 GB of RAM in MATLAB; here each worker opens it with h5py and reads one
  label through its object reference. A copy re-saved as an older MAT-file is read with scipy (whole,
  once per worker: memory heavy), and so are SUNRGBDMeta.mat and allsplit.mat, which are older
  MAT-files in the release (v7.3 copies are read too).
- Labels: 0 (unlabeled) -> 255, class k -> k-1 (0 = wall ... 36 = bag), one lookup table.
- Sample ids are the 1-based frame numbers of SUNRGBDMeta.mat, 5 digits; the split comes from
  allsplit.mat's frame folders (the "/n/fs/sun3d/data/SUNRGBD/" prefix of the authors' machine removed).
  The official test set is this dataset's `val` split (as for NYUDv2): `refine eval` scores it by default.
- JPEGs are copied unchanged; frame sizes differ by sensor (e.g. 730x530 Kinect v2, 640x480 Xtion).

The preprocessed release (`--release preprocessed`, ankurhanda/sunrgbd-meta-data, what many RGB-D
repositories train on) was extracted from the same SUNRGBD2Dseg.mat: SUNRGBD-test_images.tgz and
SUNRGBD-train_images.tgz hold flat `img-NNNNNN.jpg` files numbered from 1 in each archive, and
sunrgbd_train_test_labels.tar.gz holds `img-NNNNNN.png` (grey, same 0..37 values): labels 1..5,050 are
the test images 1..5,050, labels 5,051..10,335 the train images 1..5,285. Sample ids are the 6-digit
label numbers, so the two releases never share an id.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli import matfile
from refine_cli.class_tables import voc_palette
from refine_cli.data.convert.base import ConvertedSample, Converter, DatasetSpec, Plan, SampleError, WorkItem
from refine_cli.data.convert.checks import check_same_size, checked_image_size
from refine_cli.data.convert.registry import register_converter
from refine_cli.data.format import imageio
from refine_cli.errors import RefineError

# seg37list.mat of the toolbox, in order (its underscores as spaces, like the other tables).
SUNRGBD_CLASSES: list[str] = (
    "wall,floor,cabinet,bed,chair,sofa,table,door,window,bookshelf,picture,counter,blinds,desk,shelves,curtain,"
    "dresser,pillow,mirror,floor mat,clothes,ceiling,books,fridge,tv,paper,towel,shower curtain,box,whiteboard,"
    "person,night stand,toilet,sink,lamp,bathtub,bag"
).split(",")
NUM_CLASSES = len(SUNRGBD_CLASSES)
META = "Metadata/SUNRGBDMeta.mat"  # paths inside SUNRGBDtoolbox/
SEG = "Metadata/SUNRGBD2Dseg.mat"
NAMES = "Metadata/seg37list.mat"
SPLIT = "traintestSUNRGBD/allsplit.mat"
_SENSORS = ("kv1", "kv2", "realsense", "xtion")
RELEASES = ("toolbox", "preprocessed")
PREPROCESSED_KEYS = ["train_images", "test_images", "labels"]
TEST_LABELS = 5050  # labels img-000001..img-005050 belong to the test images; the train labels follow
_NUMBERED = re.compile(r"img-(\d{6})\.(jpg|png)")
_PREPROCESSED_HINT = (
    "pass SUNRGBD-train_images.tgz, SUNRGBD-test_images.tgz and sunrgbd_train_test_labels.tar.gz "
    "(ankurhanda/sunrgbd-meta-data), or use --release toolbox"
)


def sunrgbd_lut() -> np.ndarray:
    """Source value -> unified class: 0 -> 255, 1..37 -> 0..36; larger values stay 255 (and are refused)."""
    lut = np.full(65536, 255, dtype=np.uint8)
    lut[1 : NUM_CLASSES + 1] = np.arange(NUM_CLASSES, dtype=np.uint8)
    return lut


def frame_folder(path: str) -> str:
    """'/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU0001[/image/NYU0001.jpg]' -> 'kv1/NYUdata/NYU0001'."""
    text = path.strip().replace("\\", "/").rstrip("/")
    rel = text.split("/SUNRGBD/", 1)[1] if "/SUNRGBD/" in text else text.removeprefix("SUNRGBD/")
    if re.search(r"/image/[^/]+$", rel):
        rel = rel.rsplit("/", 2)[0]
    return rel


def _find(extracted: Path, marker: str, hint: str) -> Path:
    """The folder in an extracted archive that holds `marker` (itself or one level down)."""
    for candidate in (extracted, *sorted(p for p in extracted.iterdir() if p.is_dir())):
        if (candidate / marker).exists():
            return candidate
    raise RefineError(f"{extracted} does not contain {marker}", hint=hint)


_AGAIN = "download SUNRGBDtoolbox.zip again"


def _old_mat(path: Path, variable: str, field: str | None = None) -> np.ndarray:
    """`variable` (and, for a struct array, that its elements have `field`) from an older MAT-file (scipy)."""
    import scipy.io

    try:
        data = scipy.io.loadmat(path, variable_names=[variable], squeeze_me=True, struct_as_record=False)
    except (OSError, ValueError, NotImplementedError, MemoryError, scipy.io.matlab.MatReadError) as error:
        raise RefineError(f"cannot read {path}: {error}", hint=_AGAIN) from None
    values = np.atleast_1d(data.get(variable, np.empty(0))).ravel()
    if not values.size or (field is not None and not hasattr(values[0], field)):
        raise RefineError(f"{path} has no {variable}{'.' + field if field else ''}", hint=_AGAIN)
    return values


def _strings(path: Path, variable: str, field: str | None = None) -> list[str]:
    """A cell of text (allsplit.mat, seg37list.mat), or a text field of a struct array (SUNRGBDMeta.rgbpath),
    from a v7.3 or an older MAT-file."""
    where = f"{path}:{variable}{'.' + field if field else ''}"
    if not matfile.is_mat73(path):
        return [str(getattr(v, field) if field else v) for v in _old_mat(path, variable, field)]
    with matfile.open_mat73(path, "SUN RGB-D file") as handle:
        node = handle.get(variable)
        if node is not None and field is not None:
            node = node.get(field) if matfile.matlab_class(node) == "struct" else None
        if node is None:
            raise RefineError(f"{path} has no {variable}{'.' + field if field else ''}", hint=_AGAIN)
        return [matfile.read_string(element, where) for element in matfile.elements(handle, node, where)]


def read_image_paths(path: Path) -> list[str]:
    """`SUNRGBDMeta(i).rgbpath` for every frame i, from a v7.3 or an older MAT-file."""
    return _strings(path, "SUNRGBDMeta", "rgbpath")


def check_class_names(path: Path) -> None:
    """seg37list.mat must list refine's 37 classes in refine's order (spaces and underscores alike)."""
    names = _strings(path, "seg37list")
    squash = [re.sub(r"[\s_]+", " ", name).strip().lower() for name in names]
    if squash != SUNRGBD_CLASSES:
        raise RefineError(
            f"{path} lists {len(names)} classes that differ from the 37 refine knows (e.g. {names[:3]})",
            hint="use the toolbox of the official release (SUNRGBDtoolbox.zip)",
        )


def _seg_count(path: Path) -> int:
    if matfile.is_mat73(path):
        with matfile.open_mat73(path, "SUNRGBD2Dseg.mat") as handle:
            if "SUNRGBD2Dseg" not in handle or "seglabel" not in handle["SUNRGBD2Dseg"]:
                raise RefineError(f"{path} has no SUNRGBD2Dseg.seglabel", hint=_AGAIN)
            return int(handle["SUNRGBD2Dseg"]["seglabel"].size)
    return len(_old_labels(str(path)))


@register_converter
class SUNRGBDConverter(Converter):
    """SUN RGB-D 2D segmentation, 37 classes: alltrain -> train (5,285), alltest -> val (5,050)."""

    name = "sunrgbd"
    manifest = "sunrgbd"
    version = "1"

    def required_sources(self, options: dict[str, Any]) -> list[str]:
        return list(PREPROCESSED_KEYS) if options.get("release") == "preprocessed" else ["images", "toolbox"]

    def plan(self, sources: dict[str, Path], options: dict[str, Any]) -> Plan:
        if options.get("release") == "preprocessed":
            return plan_preprocessed(sources)
        hint = "pass the official SUNRGBD.zip and SUNRGBDtoolbox.zip (rgbd.cs.princeton.edu)"
        toolbox = _find(Path(sources["toolbox"]), SEG, hint)
        images = _find(Path(sources["images"]), "SUNRGBD", hint) / "SUNRGBD"
        if not any((images / sensor).is_dir() for sensor in _SENSORS):
            raise RefineError(f"{images} has none of the sensor folders {', '.join(_SENSORS)}", hint=hint)
        if (toolbox / NAMES).is_file():
            check_class_names(toolbox / NAMES)
        folders = [frame_folder(p) for p in read_image_paths(toolbox / META)]
        seg = toolbox / SEG
        if _seg_count(seg) != len(folders):
            raise RefineError(f"{seg} has {_seg_count(seg)} label maps but {META} lists {len(folders)} frames")
        train, test = ({frame_folder(p) for p in _strings(toolbox / SPLIT, key)} for key in ("alltrain", "alltest"))
        splits: dict[str, list[str]] = {"train": [], "val": []}
        items, outside = [], 0
        for index, folder in enumerate(folders):
            split = "train" if folder in train else "val" if folder in test else None
            if split is None:
                outside += 1
                continue
            sample_id = f"{index + 1:05d}"
            image_dir = images / folder / "image"
            jpgs = sorted(image_dir.glob("*.jpg")) if image_dir.is_dir() else []
            image = jpgs[0] if len(jpgs) == 1 else image_dir / "missing.jpg"
            splits[split].append(sample_id)
            items.append(WorkItem(sample_id, ("toolbox", str(image), str(seg), index)))
        spec = _spec(
            {
                "source_release": "toolbox (SUNRGBD.zip + SUNRGBDtoolbox.zip)",
                "source_label_mapping": "SUNRGBD2Dseg seglabel: 0 (unlabeled) -> 255; k -> k-1 for k in 1..37",
                "sample_ids": "5-digit 1-based frame numbers of SUNRGBDMeta.mat (the order of SUNRGBD2Dseg.mat)",
                "source_splits": {"train": "allsplit.mat alltrain", "val": "allsplit.mat alltest (the test set)"},
                "frames_in_no_split": outside,
            }
        )
        return Plan(spec=spec, splits=splits, items=items)

    @staticmethod
    def convert(item: WorkItem) -> ConvertedSample:
        if item.args[0] == "preprocessed":
            return convert_preprocessed(Path(item.args[1]), Path(item.args[2]))
        image_path, seg, index = Path(item.args[1]), item.args[2], item.args[3]
        if not image_path.is_file():
            raise SampleError(f"frame {index + 1}: no single image in {image_path.parent}")
        label = _label(seg, index)
        if int(label.max(initial=0)) > NUM_CLASSES:
            bad = sorted(int(v) for v in np.unique(label[label > NUM_CLASSES]))[:5]
            raise SampleError(f"frame {index + 1} of {seg} has label values {bad} outside 0..{NUM_CLASSES}")
        check_same_size(label.shape, image_path, checked_image_size(image_path), f"label {index + 1} of {seg}")
        return ConvertedSample(label=sunrgbd_lut()[label], image_src=image_path)


@functools.lru_cache(maxsize=2)
def _seg_handle(path: str) -> tuple[Any, np.ndarray]:
    """One open SUNRGBD2Dseg.mat per worker process and its seglabel references (h5py handles never cross a fork)."""
    handle = matfile.open_mat73(path, "SUNRGBD2Dseg.mat")
    return handle, np.asarray(handle["SUNRGBD2Dseg"]["seglabel"][()]).ravel()


@functools.lru_cache(maxsize=1)
def _old_labels(path: str) -> list[np.ndarray]:
    """Every label map of a SUNRGBD2Dseg.mat re-saved as an older MAT-file (scipy reads it whole)."""
    return [np.asarray(frame.seglabel) for frame in _old_mat(Path(path), "SUNRGBD2Dseg", "seglabel")]


def _label(seg: str, index: int) -> np.ndarray:
    """Frame `index`'s 37-class map, H x W (h5py shows MATLAB's H x W as W x H)."""
    try:
        if matfile.is_mat73(seg):
            handle, refs = _seg_handle(seg)
            return np.asarray(handle[refs[index]][()]).T.astype(np.uint16)
        return _old_labels(seg)[index].astype(np.uint16)
    except (OSError, KeyError, ValueError, IndexError) as error:
        raise SampleError(f"cannot read label {index + 1} of {seg}: {error}") from None


def _spec(extra: dict[str, Any]) -> DatasetSpec:
    """The one class table and palette of both releases; `extra` says which release and how it was read."""
    return DatasetSpec(name="sunrgbd", classes=list(SUNRGBD_CLASSES), palette=voc_palette(NUM_CLASSES), extra=extra)


def _numbered(extracted: Path, suffix: str) -> tuple[Path, dict[int, Path]]:
    """The folder of an extracted archive (itself or one level down) with the most `img-NNNNNN.<suffix>` files,
    and those files by number; RefineError when there are none."""
    best: tuple[Path, dict[int, Path]] = (extracted, {})
    for folder in (extracted, *sorted(p for p in extracted.iterdir() if p.is_dir())):
        found = {}
        for path in folder.iterdir():
            match = _NUMBERED.fullmatch(path.name)
            if match and match.group(2) == suffix and path.is_file():
                found[int(match.group(1))] = path
        if len(found) > len(best[1]):
            best = (folder, found)
    if not best[1]:
        raise RefineError(f"{extracted} holds no img-NNNNNN.{suffix} files", hint=_PREPROCESSED_HINT)
    return best


def plan_preprocessed(sources: dict[str, Path]) -> Plan:
    """The preprocessed release: test image i <-> label i, train image j <-> label 5,050 + j."""
    _, labels = _numbered(Path(sources["labels"]), "png")
    test_folder, test = _numbered(Path(sources["test_images"]), "jpg")
    _, train = _numbered(Path(sources["train_images"]), "jpg")
    if max(test) > TEST_LABELS:
        raise RefineError(
            f"{test_folder} holds test images numbered up to {max(test)}, but the release has {TEST_LABELS:,}",
            hint="SUNRGBD-test_images.tgz and SUNRGBD-train_images.tgz may be swapped; " + _PREPROCESSED_HINT,
        )
    splits: dict[str, list[str]] = {"train": [], "val": []}
    items: list[WorkItem] = []
    bad: list[tuple[str, str]] = []
    used: set[int] = set()
    for split, images, offset in (("train", train, TEST_LABELS), ("val", test, 0)):
        for number in sorted(images):
            label_number = number + offset
            sample_id = f"{label_number:06d}"
            splits[split].append(sample_id)
            label = labels.get(label_number)
            if label is None:
                bad.append((sample_id, f"{images[number]} has no label img-{label_number:06d}.png"))
                continue
            used.add(label_number)
            items.append(WorkItem(sample_id, ("preprocessed", str(images[number]), str(label))))
    extra = {
        "source_release": "preprocessed (ankurhanda/sunrgbd-meta-data)",
        "source_label_mapping": "img-NNNNNN.png: 0 (unlabeled) -> 255; k -> k-1 for k in 1..37",
        "sample_ids": "6-digit numbers of the release's label files (1..5,050 test, 5,051..10,335 train)",
        "source_splits": {"train": "SUNRGBD-train_images.tgz", "val": "SUNRGBD-test_images.tgz (the test set)"},
        "labels_without_image": len(set(labels) - used),
    }
    return Plan(spec=_spec(extra), splits=splits, items=items, bad=bad)


def convert_preprocessed(image_path: Path, label_path: Path) -> ConvertedSample:
    """One image and its grey 0..37 label of the preprocessed release (an RGB copy with equal channels is read too)."""
    try:
        label = imageio.read_mask(label_path)
    except imageio.ImageReadError as error:
        raise SampleError(error.one_line()) from None
    if label.ndim == 3:
        if not (np.array_equal(label[..., 0], label[..., 1]) and np.array_equal(label[..., 0], label[..., 2])):
            raise SampleError(f"label {label_path} is a colour image; the release's labels are grey class values")
        label = label[..., 0]
    if int(label.max(initial=0)) > NUM_CLASSES or int(label.min(initial=0)) < 0:
        bad = sorted(int(v) for v in np.unique(label[(label > NUM_CLASSES) | (label < 0)]))[:5]
        raise SampleError(f"label {label_path} has values {bad} outside 0..{NUM_CLASSES}")
    check_same_size(label.shape, image_path, checked_image_size(image_path), f"label {label_path}")
    return ConvertedSample(label=sunrgbd_lut()[label.astype(np.int64)], image_src=image_path)


def prepared_release(dataset: Path) -> str | None:
    """The release an existing `sunrgbd` folder was made from (its meta.json), or None when unknown."""
    try:
        meta = json.loads((dataset / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    extra = meta.get("extra") if isinstance(meta, dict) else None
    text = extra.get("source_release") if isinstance(extra, dict) else None
    return ("preprocessed" if text.startswith("preprocessed") else "toolbox") if isinstance(text, str) else None


def choose_release(requested: str, folder: Path | None, files: dict[str, str], prepared: str | None = None) -> str:
    """'auto' -> the release whose files `folder` (the --archives or downloads folder) holds: 'preprocessed' when
    it has that release's three files and no SUNRGBD.zip, 'toolbox' when it has the official files; with
    neither, the release the existing dataset (`prepared`) was made from, so a rerun after the downloads were
    deleted does not fetch the other one; else 'toolbox'. `files` maps source keys to file names."""
    requested = requested.strip().lower()
    if requested != "auto":
        if requested not in RELEASES:
            raise RefineError(f"--release {requested!r} is not one of auto, {', '.join(RELEASES)}")
        return requested
    present = {key for key, name in files.items() if folder is not None and (folder / name).is_file()}
    if set(PREPROCESSED_KEYS) <= present and "images" not in present:
        return "preprocessed"
    if present & {"images", "toolbox"}:
        return "toolbox"
    return prepared or "toolbox"
