"""`refine prepare context`: VOC 2010 images + 459-label LabelMap .mat files -> `context` / `context59`.

Expected values are literals from docs/dataset-facts.md appendix A (459-id -> RefineNet/FCN index), never
computed by our code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.acquire.manifest import load_manifest
from refine_cli.data.convert.base import SampleError
from refine_cli.data.convert.datasets.context import check_labels_txt, context_lut
from refine_cli.data.convert.registry import get_converter
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.errors import RefineError
from tests.support.fake_voc2010_person_part_context import (
    CONTEXT_TAR,
    VOC2010_TAR,
    build_context_tar,
    build_voc2010_tar,
    context_labels_txt,
    mat_bytes,
)
from tests.support.fake_voc2012_sbd_coco import fixture_manifest
from tests.support.prepare_runner import PrepareRun, run_prepare

# (LabelMap value = 1-based id in labels.txt, RefineNet/FCN class) from docs/dataset-facts.md appendix A;
# ids outside the 59 classes (1 accordion, 431 unknown, 459 wool) and 0 (unlabelled) are background.
PAIRS_60 = [
    (0, 0), (1, 0), (2, 1), (23, 2), (113, 12), (397, 11), (284, 15), (427, 20), (9, 21), (80, 28),
    (158, 33), (187, 36), (189, 37), (105, 42), (296, 43), (355, 44), (295, 45), (360, 50), (19, 52),
    (440, 56), (458, 59), (431, 0), (459, 0),
]  # fmt: skip
# mmseg's alphabetical indices for the same ids (appendix A): our output must NOT be these.
MMSEG_ORDER = {284: 37, 397: 50, 19: 4, 80: 18}

TRAIN = ["2008_000002", "2008_000003"]
VAL = ["2008_000007", "2008_000009"]
PORTRAIT = "2008_000003"


def _label_map(height: int, width: int) -> np.ndarray:
    """Row k (k < len(PAIRS_60)) holds the k-th source id; the rest is 0."""
    label_map = np.zeros((height, width), dtype=np.uint16)
    for row, (source_id, _) in enumerate(PAIRS_60):
        label_map[row, :] = source_id
    return label_map


def _maps(ids: list[str]) -> dict[str, np.ndarray]:
    return {i: _label_map(64, 48) if i == PORTRAIT else _label_map(48, 64) for i in ids}


def _build(folder: Path, **context_kwargs: object) -> Path:
    build_voc2010_tar(folder, TRAIN, VAL, sizes={PORTRAIT: (48, 64)})
    maps = context_kwargs.pop("maps", None) or _maps(TRAIN + VAL)
    build_context_tar(folder, maps, **context_kwargs)  # type: ignore[arg-type]
    return folder


@pytest.mark.parametrize("source_id, expected", PAIRS_60)
def test_lut_60_and_59(source_id: int, expected: int) -> None:
    assert context_lut(60)[source_id] == expected
    assert context_lut(59)[source_id] == (255 if expected == 0 else expected - 1)


def test_fcn_order_not_mmseg_alphabetical() -> None:
    lut = context_lut(60)
    for source_id, mmseg_index in MMSEG_ORDER.items():
        assert lut[source_id] != mmseg_index


def test_labels_txt_check(tmp_path: Path) -> None:
    good = tmp_path / "labels.txt"
    good.write_bytes(context_labels_txt())
    check_labels_txt(good)
    shifted = tmp_path / "shifted.txt"
    shifted.write_bytes(context_labels_txt({284: "pig"}))
    with pytest.raises(RefineError, match=r"id 284 is 'pig', expected 'person'"):
        check_labels_txt(shifted)
    short = tmp_path / "short.txt"
    short.write_text("1: accordion\n2: aeroplane\n")
    with pytest.raises(RefineError, match="lists 2 labels"):
        check_labels_txt(short)


def _extracted(tmp_path: Path, folder: Path) -> dict[str, Path]:
    import tarfile

    out = {}
    for key, name in (("voc2010", "VOCtrainval_03-May-2010.tar"), ("annotations", "trainval.tar.gz")):
        with tarfile.open(folder / name) as tar:
            tar.extractall(tmp_path / f"x_{key}", filter="data")
        out[key] = tmp_path / f"x_{key}"
    return out


def test_convert_rejects_bad_mat_files(tmp_path: Path) -> None:
    maps = _maps(TRAIN + VAL)
    maps[VAL[0]] = _label_map(47, 64)  # one row short
    maps[VAL[1]] = maps[VAL[1]].copy()
    maps[VAL[1]][30, 3] = 460  # beyond labels.txt
    raw = {TRAIN[0]: mat_bytes({"Segmentation": np.zeros((48, 64), np.uint8)})}
    folder = _build(tmp_path / "archives", maps=maps, raw_mats=raw)
    converter = get_converter("context")
    plan = converter.plan(_extracted(tmp_path, folder), {})
    items = {item.sample_id: item for item in plan.items}
    with pytest.raises(SampleError, match=r"2008_000002\.mat has no LabelMap variable"):
        converter.convert(items[TRAIN[0]])
    with pytest.raises(SampleError, match=r"2008_000007\.mat is 64x47 but image .*2008_000007\.jpg is 64x48"):
        converter.convert(items[VAL[0]])
    with pytest.raises(SampleError, match=r"2008_000009\.mat: LabelMap has values \[460\]"):
        converter.convert(items[VAL[1]])
    assert converter.convert(items[PORTRAIT]).label.shape == (64, 48)


def test_plan_rejects_a_different_labels_txt(tmp_path: Path) -> None:
    folder = _build(tmp_path / "archives", labels_txt=context_labels_txt({397: "diningtable-moved"}))
    with pytest.raises(RefineError, match="id 397"):
        get_converter("context").plan(_extracted(tmp_path, folder), {})


def _prepare(tmp_path: Path, archives: Path, *extra: str, base_url: str | None = None) -> PrepareRun:
    """`refine prepare context` on the fixture archives: from `base_url` (download) or `--archives`."""
    sources = {"voc2010": archives / VOC2010_TAR, "annotations": archives / CONTEXT_TAR}
    manifest = fixture_manifest(tmp_path, "context", sources, base_url, {"train": len(TRAIN), "val": len(VAL)})
    args = ["context", "--root", str(tmp_path / "data"), "--manifest", str(manifest), *extra]
    return run_prepare(args if base_url else [*args, "--archives", str(archives)])


def test_packaged_manifest_matches_the_reference() -> None:
    manifest = load_manifest("context")
    assert manifest.splits == {"train": 4998, "val": 5105}
    voc = manifest.source("voc2010")
    assert voc.file == "VOCtrainval_03-May-2010.tar"
    assert voc.md5 == "da459979d0c395079b5c75ee67908abb"
    assert voc.sha1 == "bf9985e9f2b064752bf6bd654d89f017c76c395a"
    annotations = manifest.source("annotations")
    assert annotations.file == "trainval.tar.gz"
    assert annotations.urls[0] == "https://roozbehm.info/pascal-context/trainval.tar.gz"


def _check_pixels(label: np.ndarray, variant: int) -> None:
    for row, (source_id, expected) in enumerate(PAIRS_60):
        want = expected if variant == 60 else (255 if expected == 0 else expected - 1)
        assert int(label[row, 5]) == want, (source_id, variant)


def test_prepare_context_both_variants(tmp_path: Path, http_server) -> None:
    archives = _build(tmp_path / "archives")
    for archive in archives.iterdir():
        http_server.files[archive.name] = archive.read_bytes()
    result = _prepare(tmp_path, archives, "--classes", "both", "--workers", "2", base_url=http_server.url(""))
    assert result.exit_code == 0, result.output
    assert result.report is not None
    assert [(d["name"], d["splits"], d["check"]["ok"]) for d in result.report["datasets"]] == [
        ("context", {"train": 2, "val": 2}, True),
        ("context59", {"train": 2, "val": 2}, True),
    ]
    assert len(http_server.requests_for(VOC2010_TAR)) == 1  # fetched once for both datasets
    context = UnifiedDataset(tmp_path / "data" / "context")
    assert context.meta.num_classes == 60
    assert context.meta.classes[:2] == ["background", "aeroplane"]
    assert (context.meta.classes[11], context.meta.classes[15], context.meta.classes[59]) == ("table", "person", "wood")
    assert context.split_ids("train") == TRAIN and context.split_ids("val") == VAL
    assert context.meta.extra["labels_txt_checked"] is True
    assert context.meta.extra["source_label_mapping"]["284"] == 15
    _check_pixels(context.read_label(TRAIN[0]), 60)
    _check_pixels(context.read_label(PORTRAIT), 60)
    assert context.read_label(PORTRAIT).shape == (64, 48)
    context59 = UnifiedDataset(tmp_path / "data" / "context59")
    assert context59.meta.num_classes == 59 and context59.meta.classes[0] == "aeroplane"
    _check_pixels(context59.read_label(VAL[1]), 59)
    for name in ("context", "context59"):
        checked = CliRunner().invoke(app, ["check", str(tmp_path / "data" / name)])
        assert checked.exit_code == 0, checked.output


def test_prepare_context_default_is_60_classes(tmp_path: Path) -> None:
    archives = _build(tmp_path / "archives")
    result = _prepare(tmp_path, archives, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert result.report is not None and result.report["name"] == "context"
    assert UnifiedDataset(tmp_path / "data" / "context").meta.num_classes == 60
    assert not (tmp_path / "data" / "context59").exists()


def test_missing_mat_member_is_one_clear_error(tmp_path: Path) -> None:
    maps = _maps(TRAIN + VAL)
    del maps[VAL[1]]
    archives = _build(tmp_path / "archives", maps=maps)
    result = _prepare(tmp_path, archives, "--classes", "59", "--workers", "1")
    assert result.exit_code == 2
    assert (
        "missing annotation file" in result.output
        and "2008_000009.mat" in result.output
        and "Traceback" not in result.output
    )


def test_split_lists_are_read_by_the_one_id_reader(tmp_path: Path) -> None:
    """Context and Person-Part lists go through `checks.read_id_list`: first token, safe ids, once each."""
    from refine_cli.data.convert.checks import read_id_list

    listing = tmp_path / "train.txt"
    listing.write_text("2008_000002 1\n\n2008_000003\n2008_000002\n")
    assert read_id_list(listing) == ["2008_000002", "2008_000003"]
    deeplab = tmp_path / "deeplab.txt"
    deeplab.write_text("/JPEGImages/2008_000003.jpg /SegmentationPart/2008_000003.png\n")
    assert read_id_list(deeplab, to_id=lambda entry: Path(entry).stem) == ["2008_000003"]
    listing.write_text("2008_000002\n../../outside\n")
    with pytest.raises(RefineError, match=r"train\.txt line 2: '\.\./\.\./outside' is not a valid sample id"):
        read_id_list(listing)
