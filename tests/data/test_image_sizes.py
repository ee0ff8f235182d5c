"""Image-size statistics: recorded by `prepare` in meta.json, computed (and stored) on first use for older datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refine_cli.data.format.image_sizes import ImageSizes, dataset_image_sizes
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.errors import RefineError
from tests.support import custom_exports as ex
from tests.support.prepare_runner import run_prepare

SIZES = [(48, 64), (64, 48), (96, 128), (40, 200)]  # heights 40..96, widths 48..200, short sides 40, 48, 48, 96


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sizes")
    for index, size in enumerate(SIZES):
        ex.save_rgb(root / "src" / "images" / f"p{index}.png", ex.photo(index, size))
        ex.save_index(root / "src" / "masks" / f"p{index}.png", ex.painted(index, size=size))
    (root / "src" / "classes.txt").write_text("background\ncat\ndog\n")
    result = run_prepare(["custom", "own", "--from", str(root / "src"), "--classes", str(root / "src" / "classes.txt"),
                          "--root", str(root), "-j", "1", "--val-fraction", "0.25"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return root / "own"


EXPECTED = {
    "samples": 4,
    "height": {"min": 40, "median": 48, "max": 96},
    "width": {"min": 48, "median": 64, "max": 200},
    "short_side": {"min": 40, "median": 48, "max": 96},
}


def test_prepare_records_min_median_max_in_meta_json(prepared: Path) -> None:
    meta = json.loads((prepared / "meta.json").read_text())
    assert meta["image_sizes"] == EXPECTED  # lower medians: sizes some image really has
    assert dataset_image_sizes(UnifiedDataset(prepared)).median_short_side == 48


def test_an_older_dataset_gets_them_on_first_use(prepared: Path, tmp_path: Path) -> None:
    import shutil

    old = tmp_path / "old"
    shutil.copytree(prepared, old)
    meta = json.loads((old / "meta.json").read_text())
    del meta["image_sizes"]  # what refine wrote before it recorded them
    (old / "meta.json").write_text(json.dumps(meta))
    sizes = dataset_image_sizes(UnifiedDataset(old))
    assert sizes is not None and sizes.to_dict() == EXPECTED
    assert json.loads((old / "meta.json").read_text())["image_sizes"] == EXPECTED  # stored for the next use
    assert UnifiedDataset(old).meta.image_sizes == EXPECTED


def test_a_damaged_entry_is_one_clear_error(prepared: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(prepared, bad)
    meta = json.loads((bad / "meta.json").read_text())
    meta["image_sizes"] = {"samples": 4, "height": {"min": 0, "median": 5, "max": 9}}
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RefineError, match="image_sizes"):
        dataset_image_sizes(UnifiedDataset(bad))


def test_describe() -> None:
    same = ImageSizes(3, (96, 96, 96), (128, 128, 128), (96, 96, 96))
    assert same.describe() == "all 96x128"
    mixed = ImageSizes(3, (40, 48, 96), (48, 64, 200), (40, 48, 96))
    assert mixed.describe() == "48x64 median, 40x48 to 96x200"
