"""SBD (Semantic Boundaries Dataset, benchmark.tgz) -> unified `sbd`: train 8,498 / val 2,857, 21 VOC classes.

Labels live in MATLAB v5 files `cls/<id>.mat` as struct `GTcls` whose `Segmentation` field is the HxW
class map (0..20; SBD has no 255 band). scipy reads them; both the record-array form
(`loadmat(f)['GTcls'][0]['Segmentation'][0]`) and the object form are accepted. The reader is also
used by `refine prepare voc --aug` for the SBD-only ids of train_aug.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.class_tables import voc_palette
from refine_cli.data.convert.base import ConvertedSample, Converter, DatasetSpec, Plan, SampleError, WorkItem
from refine_cli.data.convert.checks import check_label, image_size, read_id_list
from refine_cli.data.convert.datasets.voc_family import VOC_CLASSES
from refine_cli.data.convert.registry import register_converter
from refine_cli.errors import RefineError

SBD_DIR = ("benchmark_RELEASE", "dataset")


def find_sbd_root(extracted: Path) -> Path:
    """The `benchmark_RELEASE/dataset` folder of an extracted benchmark.tgz (or a folder already inside it)."""
    extracted = Path(extracted)
    for candidate in (extracted / SBD_DIR[0] / SBD_DIR[1], extracted / SBD_DIR[1], extracted):
        if (candidate / "cls").is_dir() and (candidate / "img").is_dir():
            return candidate
    raise RefineError(
        f"{extracted} does not contain benchmark_RELEASE/dataset/cls and .../img",
        hint="pass the official SBD benchmark.tgz (md5 82b4d87ceb2ed10f6038a1cba92111cb)",
    )


def read_sbd_splits(root: Path) -> tuple[list[str], list[str]]:
    """SBD's own train and val lists; they must not share ids."""
    train = read_id_list(root / "train.txt")
    val = read_id_list(root / "val.txt")
    shared = sorted(set(train) & set(val))
    if shared:
        raise RefineError(
            f"SBD train.txt and val.txt share {len(shared)} id(s), e.g. {shared[0]}",
            hint="the lists are not the official ones; download benchmark.tgz again",
        )
    return train, val


def read_sbd_label(path: Path) -> np.ndarray:
    """`GTcls.Segmentation` of an SBD cls .mat file as uint8 class indices; SampleError naming the file."""
    import scipy.io

    if not path.is_file():
        raise SampleError(f"missing label file {path}")
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False, variable_names=["GTcls"])
    except Exception as error:  # noqa: BLE001 - scipy raises many types (MatReadError, ValueError, OSError...)
        raise SampleError(f"cannot read label {path}: {type(error).__name__}: {error}") from None
    gt = mat.get("GTcls")
    segmentation = getattr(gt, "Segmentation", None)
    if segmentation is None and isinstance(gt, np.ndarray) and gt.dtype.names and "Segmentation" in gt.dtype.names:
        segmentation = gt["Segmentation"].flat[0]
    if segmentation is None:
        raise SampleError(f"label {path} has no GTcls.Segmentation (is it an SBD cls/*.mat file?)")
    segmentation = np.asarray(segmentation)
    if segmentation.ndim != 2 or segmentation.dtype.kind not in "uif":
        raise SampleError(
            f"label {path}: GTcls.Segmentation is {segmentation.dtype} {segmentation.shape}, not a 2-D map"
        )
    if segmentation.dtype != np.uint8:
        if segmentation.size and (
            segmentation.min() < 0 or segmentation.max() > 255 or not np.all(np.mod(segmentation, 1) == 0)
        ):
            raise SampleError(f"label {path}: GTcls.Segmentation holds values that are not class indices")
        segmentation = segmentation.astype(np.uint8)
    return np.ascontiguousarray(segmentation)


def convert_sbd_sample(image_path: Path, mat_path: Path) -> ConvertedSample:
    """One SBD sample: label from the .mat, JPEG copied unchanged; sizes and values checked."""
    label = read_sbd_label(mat_path)
    size = image_size(image_path)
    check_label(label, size, len(VOC_CLASSES), mat_path, image_path)
    return ConvertedSample(label=label, image_src=image_path)


def sbd_item(root: Path, sample_id: str, kind: str = "sbd") -> WorkItem:
    """A work item for an SBD sample (paths as strings: they cross process boundaries)."""
    return WorkItem(sample_id, (kind, str(root / "img" / f"{sample_id}.jpg"), str(root / "cls" / f"{sample_id}.mat")))


def voc_family_spec(name: str, extra: dict[str, Any]) -> DatasetSpec:
    """The 21 VOC classes and the VOC colour map, shared by voc, sbd and coco-voc so models transfer."""
    return DatasetSpec(
        name=name, classes=list(VOC_CLASSES), palette=voc_palette(len(VOC_CLASSES)), ignore_index=255, extra=extra
    )


@register_converter
class SBDConverter(Converter):
    """SBD alone: its own train/val split. Its train overlaps VOC 2012 val; see `refine prepare voc --aug`."""

    name = "sbd"
    manifest = "sbd"
    version = "1"

    sources = ("benchmark",)

    def plan(self, sources: dict[str, Path], options: dict[str, Any]) -> Plan:
        root = find_sbd_root(Path(sources["benchmark"]))
        train, val = read_sbd_splits(root)
        items = [sbd_item(root, sample_id) for sample_id in [*train, *val]]
        spec = voc_family_spec(
            "sbd",
            {
                "label_source": "benchmark_RELEASE/dataset/cls/<id>.mat, GTcls.Segmentation (0..20, no 255 band)",
                "warning": "SBD train overlaps VOC 2012 val; do not validate an sbd-trained model on voc/val",
            },
        )
        return Plan(spec=spec, splits={"train": train, "val": val}, items=items)

    @staticmethod
    def convert(item: WorkItem) -> ConvertedSample:
        _kind, image_path, mat_path = item.args
        return convert_sbd_sample(Path(image_path), Path(mat_path))
