"""PASCAL VOC 2012 -> unified `voc`: train 1,464 / val 1,449, plus train_aug 10,582 with `--aug` (needs SBD).

VOC labels are palette ("P") PNGs: the pixel INDEX is the class and 255 marks the void band around
objects. They are read as indices (reading colours gives 0/128/192 garbage, pytorch-deeplab-resnet #47).

train_aug follows mmseg's voc_aug.py: (VOC train + SBD train + SBD val) - VOC val. SBD train overlaps
VOC val, so without the subtraction a model would train on its validation images. Ids in VOC train keep
their VOC label (with its 255 band); SBD-only ids take the SBD .mat label and the SBD image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from refine_cli.data.convert.base import ConvertedSample, Converter, Plan, SampleError, WorkItem
from refine_cli.data.convert.checks import check_label, image_size, read_id_list, read_index_png
from refine_cli.data.convert.datasets.sbd import (
    convert_sbd_sample,
    find_sbd_root,
    read_sbd_splits,
    sbd_item,
    voc_family_spec,
)
from refine_cli.data.convert.datasets.voc_family import VOC_CLASSES
from refine_cli.data.convert.registry import register_converter
from refine_cli.errors import RefineError

VOC_DIR = ("VOCdevkit", "VOC2012")


def find_voc_root(extracted: Path) -> Path:
    """The `VOCdevkit/VOC2012` folder of an extracted VOCtrainval tar (or a folder already inside it)."""
    extracted = Path(extracted)
    for candidate in (extracted / VOC_DIR[0] / VOC_DIR[1], extracted / VOC_DIR[1], extracted):
        if (candidate / "JPEGImages").is_dir() and (candidate / "SegmentationClass").is_dir():
            return candidate
    raise RefineError(
        f"{extracted} does not contain VOCdevkit/VOC2012/JPEGImages and SegmentationClass",
        hint="pass the official VOCtrainval_11-May-2012.tar (md5 6cd6e144f989b92b3379bac3b3de84fd)",
    )


def train_aug_ids(voc_train: list[str], voc_val: list[str], sbd_train: list[str], sbd_val: list[str]) -> list[str]:
    """(VOC train | SBD train | SBD val) - VOC val, sorted: the 10,582-image list on the official data."""
    excluded = set(voc_val)
    return sorted((set(voc_train) | set(sbd_train) | set(sbd_val)) - excluded)


def expected_split_counts(options: dict[str, Any], default_manifest: str) -> dict[str, int]:
    """Split counts from the manifest in use (`options['manifest']`: a Manifest, a name/path, or None)."""
    from refine_cli.data.acquire.manifest import Manifest, load_manifest

    manifest = options.get("manifest")
    if isinstance(manifest, Manifest):
        return dict(manifest.splits)
    return dict(load_manifest(manifest or default_manifest).splits)


def check_train_aug(
    count: int, voc_train: list[str], voc_val: list[str], sbd_sizes: tuple[int, int], expected: dict[str, int]
) -> None:
    """Assert the train_aug size (10,582 on the official data) whenever the VOC lists are the official ones.

    "Official" means the VOC train/val lists have the manifest's sizes; then the only way to get another
    train_aug size is an incomplete or altered SBD, which would silently change the training set.
    A test manifest with small counts exercises this same check on fixtures.
    """
    want = expected.get("train_aug")
    if want is None or len(voc_train) != expected.get("train") or len(voc_val) != expected.get("val"):
        return
    if count != want:
        raise RefineError(
            f"train_aug has {count} ids, expected {want} = (VOC train + SBD train + SBD val) - VOC val "
            f"(SBD lists here: train {sbd_sizes[0]}, val {sbd_sizes[1]})",
            hint="the SBD archive is not the official benchmark.tgz or is incomplete; download it again",
        )


@register_converter
class VOCConverter(Converter):
    """VOC 2012 segmentation, optionally augmented with SBD (options['aug'])."""

    name = "voc"
    manifest = "voc"
    version = "1"

    def required_sources(self, options: dict[str, Any]) -> list[str]:
        return ["trainval", "sbd"] if options.get("aug") else ["trainval"]

    def plan(self, sources: dict[str, Path], options: dict[str, Any]) -> Plan:
        root = find_voc_root(Path(sources["trainval"]))
        lists = root / "ImageSets" / "Segmentation"
        train = read_id_list(lists / "train.txt")
        val = read_id_list(lists / "val.txt")
        shared = sorted(set(train) & set(val))
        if shared:
            raise RefineError(
                f"VOC train.txt and val.txt share {len(shared)} id(s), e.g. {shared[0]}",
                hint="the lists are not the official ones; download the VOC tar again",
            )
        items = [
            WorkItem(
                sid, ("voc", str(root / "JPEGImages" / f"{sid}.jpg"), str(root / "SegmentationClass" / f"{sid}.png"))
            )
            for sid in [*train, *val]
        ]
        splits = {"train": train, "val": val}
        extra: dict[str, Any] = {"label_source": "VOC2012/SegmentationClass palette indices; 255 = void band"}
        if options.get("aug"):
            if "sbd" not in sources:
                raise RefineError("--aug needs the SBD archive (benchmark.tgz)", hint="pass it with --archives")
            sbd_root = find_sbd_root(Path(sources["sbd"]))
            sbd_train, sbd_val = read_sbd_splits(sbd_root)
            aug = train_aug_ids(train, val, sbd_train, sbd_val)
            check_train_aug(len(aug), train, val, (len(sbd_train), len(sbd_val)), expected_split_counts(options, "voc"))
            voc_train = set(train)
            items.extend(sbd_item(sbd_root, sid) for sid in aug if sid not in voc_train)
            splits["train_aug"] = aug
            extra["train_aug"] = (
                "(VOC train + SBD train + SBD val) - VOC val; VOC train ids keep the VOC label, "
                f"the other {len(aug) - len(voc_train)} ids use the SBD cls/*.mat label and SBD image"
            )
        return Plan(spec=voc_family_spec("voc", extra), splits=splits, items=items)

    @staticmethod
    def convert(item: WorkItem) -> ConvertedSample:
        kind, image_path, label_path = item.args
        if kind == "sbd":
            return convert_sbd_sample(Path(image_path), Path(label_path))
        if kind != "voc":
            raise SampleError(f"unknown VOC work item kind {kind!r} for {item.sample_id}")
        image, label_file = Path(image_path), Path(label_path)
        label = read_index_png(label_file)
        check_label(label, image_size(image), len(VOC_CLASSES), label_file, image)
        return ConvertedSample(label=label, image_src=image)
