"""`refine prepare sbd`: SBD's cls/*.mat (GTcls.Segmentation) labels and its own train/val split."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from refine_cli.data.acquire.extract import extract_archive
from refine_cli.data.acquire.manifest import load_manifest
from refine_cli.data.convert.base import SampleError
from refine_cli.data.convert.datasets.sbd import read_sbd_label
from refine_cli.data.convert.datasets.voc_family import VOC_CLASSES
from refine_cli.data.convert.registry import get_converter
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.errors import RefineError
from tests.support.fake_voc2012_sbd_coco import SBD_TRAIN, SBD_VAL, build_sbd, fixture_manifest
from tests.support.prepare_runner import run_prepare


def test_packaged_manifest_matches_the_reference() -> None:
    manifest = load_manifest("sbd")
    assert manifest.splits == {"train": 8498, "val": 2857}
    source = manifest.source("benchmark")
    assert source.file == "benchmark.tgz" and source.size == 1_419_539_633
    assert source.md5 == "82b4d87ceb2ed10f6038a1cba92111cb"
    assert source.sha1 == "7129e0a480c2d6afb02b517bb18ac54283bfaa35"
    assert source.urls[0].startswith("https://www2.eecs.berkeley.edu/")  # the http://www. form loops


def test_prepare_sbd_end_to_end(tmp_path: Path) -> None:
    sbd = build_sbd(tmp_path / "archives")
    manifest = fixture_manifest(tmp_path, "sbd", {"benchmark": sbd.archive}, None, {"train": 4, "val": 2})
    root = tmp_path / "data"
    args = ["sbd", "--root", str(root), "--archives", str(sbd.archive.parent), "--manifest", str(manifest)]
    result = run_prepare([*args, "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert result.report is not None and result.report["splits"] == {"train": 4, "val": 2}

    data = UnifiedDataset(root / "sbd")
    assert data.meta.classes == VOC_CLASSES
    assert data.split_ids("train") == SBD_TRAIN and data.split_ids("val") == SBD_VAL
    for sample_id in SBD_TRAIN + SBD_VAL:
        label = data.read_label(sample_id)
        np.testing.assert_array_equal(label, sbd.labels[sample_id])
        assert 255 not in label and label.max() <= 20
        assert data.image_path(sample_id).read_bytes() == sbd.images[sample_id]

    again = run_prepare([*args, "--workers", "1"])  # a rerun reuses every finished sample
    assert again.exit_code == 0 and again.report is not None
    assert again.report["converted"] == 0 and again.report["reused"] == 6


def _mat_bytes(obj: dict) -> io.BytesIO:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, obj)
    buffer.seek(0)
    return buffer


def test_read_sbd_label_accepts_other_numeric_types(tmp_path: Path) -> None:
    segmentation = np.array([[0, 1, 2], [20, 15, 0]], dtype=np.float64)  # MATLAB doubles
    path = tmp_path / "double.mat"
    path.write_bytes(_mat_bytes({"GTcls": {"Segmentation": segmentation}}).getvalue())
    label = read_sbd_label(path)
    assert label.dtype == np.uint8 and label.tolist() == [[0, 1, 2], [20, 15, 0]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"GTinst": {"Segmentation": np.zeros((2, 2), np.uint8)}}, "has no GTcls.Segmentation"),
        ({"GTcls": {"Segmentation": np.full((2, 2), 0.5)}}, "not class indices"),
        (None, "cannot read label"),
    ],
)
def test_read_sbd_label_names_the_file(tmp_path: Path, content: dict | None, message: str) -> None:
    path = tmp_path / "2008_000123.mat"
    path.write_bytes(b"not a mat file at all" * 8 if content is None else _mat_bytes(content).getvalue())
    with pytest.raises(SampleError, match=message) as caught:
        read_sbd_label(path)
    assert "2008_000123.mat" in caught.value.reason


def test_label_of_the_wrong_size_names_both_files(tmp_path: Path) -> None:
    sbd = build_sbd(tmp_path / "a", corrupt={"2008_000010": "label_size"})
    converter = get_converter("sbd")
    plan = converter.plan({"benchmark": extract_archive(sbd.archive, tmp_path / "x")}, {})
    item = next(item for item in plan.items if item.sample_id == "2008_000010")
    with pytest.raises(SampleError, match=r"label .*2008_000010\.mat is 64x47 but image .*2008_000010\.jpg is 64x48"):
        converter.convert(item)


def test_overlapping_lists_are_refused(tmp_path: Path) -> None:
    sbd = build_sbd(tmp_path / "a", train=["2008_000010", "2008_000015"], val=["2008_000015"])
    with pytest.raises(RefineError, match="share 1 id"):
        get_converter("sbd").plan({"benchmark": extract_archive(sbd.archive, tmp_path / "x")}, {})
