"""NYUDv2: MATLAB v7.3 frames read one at a time with the axes transposed, 894 -> 40 mapping, crop, errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.acquire.manifest import load_manifest
from refine_cli.data.convert.base import SampleError
from refine_cli.data.convert.datasets.nyudv2 import NYU40_CLASSES, NYUDv2Converter, parse_crop
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.errors import RefineError
from tests.support.fake_nyu_ade20k_cityscapes import NYU_PAINTED, build_nyu, patch_center
from tests.support.fake_voc2012_sbd_coco import fixture_manifest
from tests.support.prepare_runner import run_prepare

# NYU id -> (unified index, class name), from classMapping40.mat as listed in docs/dataset-facts.md appendix B
# (40-class id minus one; 0 = unlabeled -> 255).
KNOWN = {
    0: (255, None), 21: (0, "wall"), 11: (1, "floor"), 157: (3, "bed"), 331: (30, "person"), 55: (36, "bag"),
    8: (37, "otherstructure"), 874: (37, "otherstructure"), 12: (38, "otherfurniture"),
    892: (38, "otherfurniture"), 1: (39, "otherprop"), 894: (39, "otherprop"),
}  # fmt: skip


def _sources(fake) -> dict[str, Path]:
    return {"labeled": fake.mat, "splits": fake.splits, "mapping": fake.mapping}


def test_plan_reads_splits_one_based(tmp_path: Path) -> None:
    fake = build_nyu(tmp_path)
    plan = NYUDv2Converter().plan(_sources(fake), {})
    assert plan.splits == {"train": ["000003", "000004", "000006"], "val": ["000001", "000002", "000005"]}
    assert plan.spec.classes == NYU40_CLASSES and len(NYU40_CLASSES) == 40
    assert plan.spec.extra["image_size_wh"] == [64, 48]


def test_convert_transposes_and_maps_known_pairs(tmp_path: Path) -> None:
    fake = build_nyu(tmp_path)
    plan = NYUDv2Converter().plan(_sources(fake), {})
    assert set(NYU_PAINTED) == set(KNOWN)
    for item in plan.items:
        out = NYUDv2Converter.convert(item)
        source = fake.labels[item.sample_id]
        assert out.label.shape == (48, 64) and out.image_ext == "png"
        for index in range(len(NYU_PAINTED)):
            y, x = patch_center(index, 64)
            target, name = KNOWN[int(source[y, x])]
            assert out.label[y, x] == target
            assert name is None or NYU40_CLASSES[target] == name
        image = np.array(Image.open(io.BytesIO(out.image_bytes)))
        np.testing.assert_array_equal(image, fake.images[item.sample_id])  # lossless, RGB order, not transposed


def test_crop_border(tmp_path: Path) -> None:
    fake = build_nyu(tmp_path, frame_px=2)
    plan = NYUDv2Converter().plan(_sources(fake), {"crop_border": "2"})
    out = NYUDv2Converter.convert(plan.items[0])
    image = np.array(Image.open(io.BytesIO(out.image_bytes)))
    assert image.shape == (44, 60, 3) and out.label.shape == (44, 60)
    assert not (image == 255).all(axis=-1).any()  # the white frame is gone
    np.testing.assert_array_equal(image, fake.images[plan.items[0].sample_id][2:-2, 2:-2])
    assert parse_crop("lw") == (6, 8, 6, 7) and parse_crop("1,2,3,4") == (1, 2, 3, 4)
    with pytest.raises(RefineError, match="invalid --crop-border"):
        parse_crop("1,2")
    with pytest.raises(RefineError, match="leaves nothing"):
        NYUDv2Converter().plan(_sources(fake), {"crop_border": "40"})


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    fake = build_nyu(tmp_path)
    not_hdf5 = tmp_path / "v5.mat"
    scipy.io.savemat(not_hdf5, {"images": np.zeros((2, 2))})
    with pytest.raises(RefineError, match=r"v5\.mat is not a MATLAB v7\.3 \(HDF5\) file"):
        NYUDv2Converter().plan({**_sources(fake), "labeled": not_hdf5}, {})
    bad_map = tmp_path / "bad" / "classMapping40.mat"
    bad_map.parent.mkdir()
    scipy.io.savemat(bad_map, {"mapClass": np.ones((1, 10), np.uint8)})
    with pytest.raises(RefineError, match="mapClass has 10 entries"):
        NYUDv2Converter().plan({**_sources(fake), "mapping": bad_map}, {})
    bad_splits = tmp_path / "splits_bad.mat"
    scipy.io.savemat(bad_splits, {"trainNdxs": np.array([[0], [2]]), "testNdxs": np.array([[1]])})
    with pytest.raises(RefineError, match="1-based frame numbers in 1..6"):
        NYUDv2Converter().plan({**_sources(fake), "splits": bad_splits}, {})
    with pytest.raises(RefineError, match="missing file"):
        NYUDv2Converter().plan({**_sources(fake), "splits": tmp_path / "nowhere"}, {})


def test_label_out_of_range_is_a_sample_error(tmp_path: Path) -> None:
    import h5py

    fake = build_nyu(tmp_path, frames=3)
    with h5py.File(fake.mat, "r+") as handle:
        handle["labels"][0, 5, 5] = 900
    item = next(i for i in NYUDv2Converter().plan(_sources(fake), {}).items if i.sample_id == "000001")
    with pytest.raises(SampleError, match="has label 900"):
        NYUDv2Converter.convert(item)


# ------------------------------------------------------------------------------------------ end to end


def test_prepare_nyudv2_end_to_end_over_http(tmp_path: Path, http_server) -> None:
    fake = build_nyu(tmp_path / "raw")
    files = {"labeled": fake.mat, "splits": fake.splits, "mapping": fake.mapping}
    for path in files.values():
        http_server.files[path.name] = path.read_bytes()
    manifest = fixture_manifest(tmp_path, "nyudv2", files, http_server.url(""), {"train": 3, "val": 3})
    root = tmp_path / "data"
    args = ["nyudv2", "--root", str(root), "--manifest", str(manifest), "--workers", "2", "--crop-border", "2"]
    result = run_prepare(args)
    assert result.exit_code == 0, result.output
    assert result.report["splits"] == {"train": 3, "val": 3} and result.report["check"]["ok"] is True
    dataset = UnifiedDataset(root / "nyudv2")
    assert dataset.meta.num_classes == 40 and dataset.meta.extra["crop_border"]["left"] == 2
    assert dataset.split_ids("val") == ["000001", "000002", "000005"]
    for sample_id in ["000001", "000004"]:
        label, image = dataset.read_label(sample_id), dataset.read_image(sample_id)
        assert label.shape == (44, 60) and image.shape == (44, 60, 3)
        np.testing.assert_array_equal(image, fake.images[sample_id][2:-2, 2:-2])
        source = fake.labels[sample_id][2:-2, 2:-2]
        for index in range(len(NYU_PAINTED)):
            y, x = patch_center(index, 64)
            assert label[y - 2, x - 2] == KNOWN[int(source[y - 2, x - 2])][0]
    assert dataset.image_path("000001").suffix == ".png"
    check = CliRunner().invoke(app, ["check", str(root / "nyudv2")])
    assert check.exit_code == 0, check.output


def test_packaged_manifest_matches_the_reference() -> None:
    manifest = load_manifest("nyudv2")
    assert manifest.splits == {"train": 795, "val": 654}
    labeled = manifest.source("labeled")
    assert labeled.size == 2_972_037_809 and not labeled.extract and not labeled.login
    assert manifest.source("splits").md5 == "08e3c3aea27130ac7c01ffd739a4535f"
    assert manifest.source("mapping").md5 == "e377c88729dd63af81205ac9a8634a19"
