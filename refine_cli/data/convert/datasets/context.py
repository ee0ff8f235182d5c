"""PASCAL-Context -> unified `context` (60 classes, 0 = background) and `context59` (background ignored).

Source (docs/dataset-facts.md section 8, "route A"): `trainval/<id>.mat` files whose `LabelMap` holds 1-based
ids into the 459-name `labels.txt`. We map them straight to the FCN / `59_labels.txt` order that
RefineNet and LW-RefineNet were trained with (VOC's 20 classes first, then 39 others), using the id
table of docs/dataset-facts.md appendix A, so the uninstallable Detail API is not needed and mmseg's
alphabetical order (a different model output order) can never sneak in.

* `context`:   the 59 classes -> 1..59, every other id (and 0 = unlabelled) -> 0 "background".
* `context59`: the 59 classes -> 0..58, everything else -> 255 (ignored), as mmseg's Context-59.

When the archive carries `labels.txt`, the 59 ids are checked against its names first: a release
with shifted ids fails loudly instead of producing a silently wrong dataset.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.class_tables import voc_palette
from refine_cli.data.convert.base import ConvertedSample, Converter, DatasetSpec, Plan, SampleError, WorkItem
from refine_cli.data.convert.checks import check_same_size, image_size, read_id_list
from refine_cli.data.convert.datasets.voc2010 import find_folder, find_voc2010
from refine_cli.data.convert.registry import register_converter
from refine_cli.errors import RefineError

NUM_SOURCE_IDS = 459  # entries of labels.txt; LabelMap values are 0..459
SPLITS = ("train", "val")

# (class name in labels.txt, its 1-based id there) in FCN/RefineNet output order 1..59 (docs/dataset-facts.md
# appendix A). 59_labels.txt spells three of them differently: diningtable, clothes, bedcloth.
CONTEXT_SOURCE_IDS: list[tuple[str, int]] = [
    ("aeroplane", 2), ("bicycle", 23), ("bird", 25), ("boat", 31), ("bottle", 34), ("bus", 45), ("car", 59),
    ("cat", 65), ("chair", 72), ("cow", 98), ("table", 397), ("dog", 113), ("horse", 207), ("motorbike", 258),
    ("person", 284), ("pottedplant", 308), ("sheep", 347), ("sofa", 368), ("train", 416), ("tvmonitor", 427),
    ("bag", 9), ("bed", 18), ("bench", 22), ("book", 33), ("building", 44), ("cabinet", 46), ("ceiling", 68),
    ("cloth", 80), ("computer", 85), ("cup", 104), ("door", 115), ("fence", 144), ("floor", 158),
    ("flower", 159), ("food", 162), ("grass", 187), ("ground", 189), ("keyboard", 220), ("light", 232),
    ("mountain", 259), ("mouse", 260), ("curtain", 105), ("platform", 296), ("sign", 355), ("plate", 295),
    ("road", 324), ("rock", 326), ("shelves", 349), ("sidewalk", 354), ("sky", 360), ("snow", 366),
    ("bedclothes", 19), ("track", 415), ("tree", 420), ("truck", 424), ("wall", 440), ("water", 445),
    ("window", 454), ("wood", 458),
]  # fmt: skip
CONTEXT60_CLASSES: list[str] = ["background"] + [name for name, _ in CONTEXT_SOURCE_IDS]
CONTEXT59_CLASSES: list[str] = CONTEXT60_CLASSES[1:]
VARIANTS = {60: "context", 59: "context59"}


def context_lut(num_classes: int) -> np.ndarray:
    """Lookup table LabelMap id (0..459) -> unified class for the 60- or 59-class dataset."""
    if num_classes not in VARIANTS:
        raise RefineError(f"PASCAL-Context has 60 or 59 classes, not {num_classes}", hint="use --classes 60 or 59")
    lut = np.full(NUM_SOURCE_IDS + 1, 0 if num_classes == 60 else 255, dtype=np.uint8)
    for index, (_, source_id) in enumerate(CONTEXT_SOURCE_IDS):
        lut[source_id] = index + 1 if num_classes == 60 else index
    return lut


def _squash(name: str) -> str:
    return re.sub(r"\s+", "", name).lower()


def check_labels_txt(path: Path) -> None:
    """Verify the 59 class ids against the archive's labels.txt ("id: name" lines, 459 of them)."""
    names: dict[int, str] = {}
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            number, sep, name = line.partition(":")
            if sep and number.strip().isdigit():
                names[int(number)] = name.strip()
    except OSError as error:
        raise RefineError(f"cannot read {path}: {error}") from None
    if len(names) != NUM_SOURCE_IDS:
        raise RefineError(
            f"{path} lists {len(names)} labels, the PASCAL-Context release has {NUM_SOURCE_IDS}",
            hint="use the original trainval.tar.gz from roozbehm.info/pascal-context",
        )
    for name, source_id in CONTEXT_SOURCE_IDS:
        if _squash(names.get(source_id, "")) != _squash(name):
            raise RefineError(
                f"{path}: id {source_id} is {names.get(source_id)!r}, expected {name!r}; "
                "this is not the annotation release refine knows",
                hint="use the original trainval.tar.gz from roozbehm.info/pascal-context",
            )


def _annotation_dir(extracted: Path) -> Path:
    mats = find_folder(Path(extracted), lambda p: p.name == "trainval" and any(p.glob("*.mat")))
    if mats is None:
        raise RefineError(
            f"{extracted} does not contain the trainval/ folder of .mat files",
            hint="pass PASCAL-Context's trainval.tar.gz (the per-image 459-label files, not the Detail JSON)",
        )
    return mats


class _ContextBase(Converter):
    """Shared plan/convert; subclasses only fix the class count and name."""

    manifest = "context"
    version = "1"
    num_classes = 60

    sources = ("voc2010", "annotations")

    def plan(self, sources: dict[str, Path], options: dict[str, Any]) -> Plan:
        voc = find_voc2010(Path(sources["voc2010"]))
        mat_dir = _annotation_dir(Path(sources["annotations"]))
        labels_txt = next((p for p in (mat_dir.parent / "labels.txt", mat_dir / "labels.txt") if p.is_file()), None)
        if labels_txt is not None:
            check_labels_txt(labels_txt)
        splits = {split: read_id_list(voc / "ImageSets" / "Main" / f"{split}.txt") for split in SPLITS}
        lut = context_lut(self.num_classes)
        items = [
            WorkItem(sample_id, (str(voc / "JPEGImages" / f"{sample_id}.jpg"), str(mat_dir / f"{sample_id}.mat"), lut))
            for split in SPLITS
            for sample_id in splits[split]
        ]
        classes = CONTEXT60_CLASSES if self.num_classes == 60 else CONTEXT59_CLASSES
        mapping = {str(source_id): int(lut[source_id]) for _, source_id in CONTEXT_SOURCE_IDS}
        spec = DatasetSpec(
            name=self.name,
            classes=list(classes),
            palette=voc_palette(len(classes)),
            extra={
                "class_order": "FCN / 59_labels.txt (RefineNet, LW-RefineNet); not mmseg's alphabetical order",
                "source_label_mapping": mapping,
                "other_source_ids": "background (0)" if self.num_classes == 60 else "ignore (255)",
                "source_splits": "VOC2010 ImageSets/Main/{train,val}.txt",
                "labels_txt_checked": labels_txt is not None,
            },
        )
        return Plan(spec=spec, splits=splits, items=items)

    @staticmethod
    def convert(item: WorkItem) -> ConvertedSample:
        image_path, mat_path, lut = Path(item.args[0]), Path(item.args[1]), item.args[2]
        label_map = read_label_map(mat_path)
        if int(label_map.max(initial=0)) > NUM_SOURCE_IDS or int(label_map.min(initial=0)) < 0:
            bad = sorted(int(v) for v in np.unique(label_map[(label_map > NUM_SOURCE_IDS) | (label_map < 0)]))[:5]
            raise SampleError(f"{mat_path}: LabelMap has values {bad} outside 0..{NUM_SOURCE_IDS}")
        label = lut[label_map]
        check_same_size(label.shape, image_path, image_size(image_path), f"label {mat_path}")
        return ConvertedSample(label=label, image_src=image_path)


def read_label_map(path: Path) -> np.ndarray:
    """The `LabelMap` of one annotation .mat as a 2-D int array; SampleError naming the file otherwise."""
    import scipy.io

    if not path.is_file():
        raise SampleError(f"missing annotation file {path}")
    try:
        data = scipy.io.loadmat(str(path), variable_names=["LabelMap"])
    except Exception as error:  # noqa: BLE001 - scipy raises many types for corrupt files
        raise SampleError(f"cannot read {path}: {error}") from None
    label_map = data.get("LabelMap")
    if label_map is None:
        raise SampleError(f"{path} has no LabelMap variable")
    label_map = np.asarray(label_map)
    if label_map.ndim != 2 or not np.issubdtype(label_map.dtype, np.number):
        raise SampleError(f"{path}: LabelMap is {label_map.dtype} {label_map.shape}, expected a 2-D integer map")
    if not np.issubdtype(label_map.dtype, np.integer):
        if not np.array_equal(label_map, np.round(label_map)):
            raise SampleError(f"{path}: LabelMap holds non-integer values")
    return label_map.astype(np.int64, copy=False)


@register_converter
class ContextConverter(_ContextBase):
    """PASCAL-Context with background as class 0 (60 classes, the RefineNet setting)."""

    name = "context"
    num_classes = 60


@register_converter
class Context59Converter(_ContextBase):
    """PASCAL-Context-59: background and unlisted classes ignored (255), classes 0..58."""

    name = "context59"
    num_classes = 59
