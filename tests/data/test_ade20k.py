"""ADE20K SceneParsing: zero reduction without underflow, official layout, bad input, end to end."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.acquire.manifest import load_manifest
from refine_cli.data.convert.base import SampleError
from refine_cli.data.convert.datasets.ade20k import ADE20K_CLASSES, ADE20KConverter, ade20k_lut
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.errors import RefineError
from tests.support.fake_nyu_ade20k_cityscapes import ADE_PAINTED, build_ade20k, patch_center
from tests.support.fake_voc2012_sbd_coco import fixture_manifest
from tests.support.prepare_runner import run_prepare

# Source value -> (unified index, class name): 0 "other" is ignored; objectInfo150 index k -> k-1
# (docs/dataset-facts.md section 7 and appendix D).
KNOWN = {
    0: (255, None), 1: (0, "wall"), 2: (1, "building"), 3: (2, "sky"), 8: (7, "bed"), 13: (12, "person"),
    149: (148, "clock"), 150: (149, "flag"),
}  # fmt: skip


def test_lut_matches_known_pairs_without_underflow() -> None:
    lut = ade20k_lut()
    for source, (target, name) in KNOWN.items():
        assert lut[source] == target
        if name is not None:
            assert ADE20K_CLASSES[target] == name
    assert lut.dtype == np.uint8 and lut[0] == 255 and 254 not in lut.tolist()
    assert len(ADE20K_CLASSES) == 150 and ADE20K_CLASSES[44] == "chest of drawers"


def _extracted(tmp_path: Path, **kwargs) -> tuple[Path, object]:
    fake = build_ade20k(tmp_path / "raw", **kwargs)
    with zipfile.ZipFile(fake.archive) as archive:
        archive.extractall(tmp_path / "x")
    return tmp_path / "x", fake


def test_plan_and_convert(tmp_path: Path) -> None:
    root, fake = _extracted(tmp_path)
    plan = ADE20KConverter().plan({"trainval": root}, {})
    assert plan.splits == {"train": fake.train_ids, "val": fake.val_ids}
    assert plan.spec.classes[0] == "wall" and plan.spec.num_classes == 150
    for item in plan.items:
        out = ADE20KConverter.convert(item)
        source = fake.labels[item.sample_id]
        assert out.label.shape == source.shape
        for index in range(len(ADE_PAINTED)):
            y, x = patch_center(index, source.shape[1])
            assert out.label[y, x] == KNOWN.get(int(source[y, x]), (int(source[y, x]) - 1,))[0]
        assert out.image_src is not None and out.image_src.suffix == ".jpg"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing-label", "missing label file"),
        ("wrong-size", r"^label \S*ADE_val_00000001\.png is 56x38 but image \S*ADE_val_00000001\.jpg is 56x40$"),
        ("rgb-label", "has mode RGB"),
    ],
)
def test_bad_label_names_the_file(tmp_path: Path, kind: str, message: str) -> None:
    root, _ = _extracted(tmp_path, bad={"ADE_val_00000001": kind})
    item = next(i for i in ADE20KConverter().plan({"trainval": root}, {}).items if i.sample_id == "ADE_val_00000001")
    with pytest.raises(SampleError, match=message) as caught:
        ADE20KConverter.convert(item)
    assert "ADE_val_00000001.png" in caught.value.reason


def test_not_scene_parsing_layout(tmp_path: Path) -> None:
    (tmp_path / "ADE20K_2021_17_01" / "images").mkdir(parents=True)
    with pytest.raises(RefineError, match="does not contain ADEChallengeData2016"):
        ADE20KConverter().plan({"trainval": tmp_path}, {})


# ------------------------------------------------------------------------------------------ end to end


def test_prepare_ade20k_from_archives(tmp_path: Path) -> None:
    fake = build_ade20k(tmp_path / "archives")
    manifest = fixture_manifest(tmp_path, "ade20k", {"trainval": fake.archive}, splits={"train": 3, "val": 2})
    root = tmp_path / "data"
    args = ["ade20k", "--root", str(root), "--archives", str(tmp_path / "archives"), "--manifest", str(manifest)]
    result = run_prepare([*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert result.report["splits"] == {"train": 3, "val": 2} and result.report["check"]["ok"] is True
    dataset = UnifiedDataset(root / "ade20k")
    assert dataset.meta.classes[149] == "flag" and dataset.meta.ignore_index == 255
    for sample_id in [*fake.train_ids, *fake.val_ids]:
        label, source = dataset.read_label(sample_id), fake.labels[sample_id]
        for index in range(len(ADE_PAINTED)):
            y, x = patch_center(index, source.shape[1])
            assert label[y, x] == KNOWN.get(int(source[y, x]), (int(source[y, x]) - 1,))[0]
        assert dataset.read_image(sample_id).shape == (*source.shape, 3)  # grayscale JPEG read as RGB
    assert dataset.image_path(fake.gray_id).read_bytes()[:2] == b"\xff\xd8"  # JPEG copied, not re-encoded
    check = CliRunner().invoke(app, ["check", str(root / "ade20k")])
    assert check.exit_code == 0, check.output


def test_prepare_ade20k_bad_label_one_line_error_then_skip(tmp_path: Path) -> None:
    fake = build_ade20k(tmp_path / "archives", bad={"ADE_train_00000003": "wrong-size"})
    manifest = fixture_manifest(tmp_path, "ade20k", {"trainval": fake.archive}, splits={"train": 3, "val": 2})
    args = ["ade20k", "--root", str(tmp_path / "data"), "--archives", str(tmp_path / "archives")]
    args += ["--manifest", str(manifest), "--workers", "1"]
    failed = run_prepare(args)
    assert failed.exit_code == 2
    lines = [line for line in failed.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: bad sample 'ADE_train_00000003'")
    assert "ADE_train_00000003.png" in lines[0] and "Traceback" not in failed.output
    skipped = run_prepare([*args, "--skip-bad"])
    assert skipped.exit_code == 0, skipped.output
    assert skipped.report["splits"] == {"train": 2, "val": 2}
    assert skipped.report["skipped"][0]["id"] == "ADE_train_00000003"


def test_packaged_manifest_matches_the_reference() -> None:
    manifest = load_manifest("ade20k")
    assert manifest.splits == {"train": 20210, "val": 2000}
    assert manifest.source("trainval").sha1 == "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"
