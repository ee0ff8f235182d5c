"""`refine prepare custom` reports problems, never guesses: every refusal, its --skip-bad / option form."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

from refine_cli.data.format.unified import UnifiedDataset
from tests.support import custom_exports as ex
from tests.support.prepare_runner import run_prepare

CLASSES = "background\ncat\ndog\n"


def folder(tmp_path: Path, n: int = 3) -> tuple[Path, Path]:
    ex.folder_export(tmp_path / "f", n=n)
    classes = tmp_path / "classes.txt"
    classes.write_text(CLASSES)
    return tmp_path / "f", classes


def prepare(source: Path, root: Path, *extra: str, name: str = "own"):  # noqa: ANN201
    return run_prepare(["custom", name, "--from", str(source), "--root", str(root), "-j", "1", *extra])


def one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_image_without_mask_and_mask_without_image(tmp_path: Path) -> None:
    source, classes = folder(tmp_path)
    ex.save_rgb(source / "images" / "lonely.jpg", ex.photo(0))
    ex.save_index(source / "masks" / "orphan.png", ex.painted(0))
    failed = prepare(source, tmp_path / "data", "--classes", str(classes))
    assert failed.exit_code == 2
    line = one_line_error(failed.output)
    assert "2 problem(s)" in line and "lonely.jpg has no mask" in line and "orphan.png has no image" in line
    assert not (tmp_path / "data" / "own" / "meta.json").exists()
    skipped = prepare(source, tmp_path / "data", "--classes", str(classes), "--skip-bad")
    assert skipped.exit_code == 0, skipped.output
    assert {s["id"] for s in skipped.report["skipped"]} == {"lonely", "orphan"}
    assert sorted(UnifiedDataset(tmp_path / "data" / "own").label_ids()) == ["p1", "p2", "photo_0"]


def test_voc_list_entry_without_mask(tmp_path: Path) -> None:
    ex.cvat_voc_export(tmp_path / "cvat", n=3)
    (tmp_path / "cvat" / "SegmentationClass" / "frame_000001.png").unlink()
    failed = prepare(tmp_path / "cvat", tmp_path / "data")
    assert failed.exit_code == 2 and "frame_000001.jpg has no mask" in one_line_error(failed.output)


def test_mask_of_another_size_is_refused(tmp_path: Path) -> None:
    source, classes = folder(tmp_path)
    ex.save_index(source / "masks" / "p1.png", np.zeros((40, 64), dtype=np.uint8))
    failed = prepare(source, tmp_path / "data", "--classes", str(classes))
    assert failed.exit_code == 2
    line = one_line_error(failed.output)
    assert re.search(r"mask \S*masks/p1\.png is 64x40 but image \S*images/p1\.png is 64x48", line), line


def _exif_jpeg(path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(ex.photo(1)).save(buffer, format="JPEG", exif=exif.tobytes())
    path.write_bytes(buffer.getvalue())


def test_exif_rotated_phone_photo_rule_is_the_stored_pixel_grid(tmp_path: Path) -> None:
    source, classes = folder(tmp_path)
    (source / "images" / "p1.png").unlink()
    _exif_jpeg(source / "images" / "p1.jpg", orientation=6)  # stored 64x48, shown 48x64
    ex.save_index(source / "masks" / "p1.png", np.zeros((64, 48), dtype=np.uint8))  # drawn on the shown picture
    failed = prepare(source, tmp_path / "data", "--classes", str(classes))
    line = one_line_error(failed.output)
    assert failed.exit_code == 2 and "is 48x64 but image" in line and "EXIF orientation 6" in line
    # a mask on the stored grid is right: used as is, no rotation of either
    stored = ex.painted(7)
    ex.save_index(source / "masks" / "p1.png", stored)
    ok = prepare(source, tmp_path / "data", "--classes", str(classes))
    assert ok.exit_code == 0, ok.output
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert np.array_equal(dataset.read_label("p1"), stored) and dataset.read_image("p1").shape == (48, 64, 3)


def test_mask_value_outside_the_classes(tmp_path: Path) -> None:
    source, classes = folder(tmp_path)
    bad = ex.painted(21)
    bad[0, 0] = 7
    ex.save_index(source / "masks" / "p1.png", bad)
    failed = prepare(source, tmp_path / "data", "--classes", str(classes))
    assert failed.exit_code == 2 and "values 7 that are in no class" in one_line_error(failed.output)
    mapped = prepare(source, tmp_path / "data", "--classes", str(classes), "--unknown-as-ignore")
    assert mapped.exit_code == 0 and UnifiedDataset(tmp_path / "data" / "own").read_label("p1")[0, 0] == 255


def test_colour_in_no_class_lists_the_colours_and_files(tmp_path: Path) -> None:
    ex.cvat_voc_export(tmp_path / "cvat", n=3)
    for name, color in (("frame_000000", (1, 2, 3)), ("frame_000002", (9, 9, 9))):
        path = tmp_path / "cvat" / "SegmentationClass" / f"{name}.png"
        rgb = np.array(Image.open(path))
        rgb[5, 5] = color
        Image.fromarray(rgb).save(path)
    failed = prepare(tmp_path / "cvat", tmp_path / "data")
    line = one_line_error(failed.output)
    assert failed.exit_code == 2 and "2 bad samples" in line
    assert "frame_000000.png has colours (1,2,3)" in line and "frame_000002.png has colours (9,9,9)" in line
    mapped = prepare(tmp_path / "cvat", tmp_path / "data", "--unknown-as-ignore")
    assert mapped.exit_code == 0 and UnifiedDataset(tmp_path / "data" / "own").read_label("frame_000002")[5, 5] == 255


def test_no_class_list_and_colour_masks_without_colours(tmp_path: Path) -> None:
    source, classes = folder(tmp_path)
    failed = prepare(source, tmp_path / "data")
    assert failed.exit_code == 2 and "has no class list" in one_line_error(failed.output)
    ex.cvat_voc_export(tmp_path / "cvat", n=2)
    (tmp_path / "cvat" / "labelmap.txt").unlink()
    no_colours = prepare(tmp_path / "cvat", tmp_path / "data", "--classes", str(classes))
    assert no_colours.exit_code == 2 and "has colours but the class list has none" in one_line_error(no_colours.output)


def test_void_value_for_data_without_background(tmp_path: Path) -> None:
    source, _ = folder(tmp_path, n=2)
    classes = tmp_path / "two.txt"
    classes.write_text("cat\ndog\n")
    run = prepare(source, tmp_path / "data", "--classes", str(classes), "--void", "0")
    assert run.exit_code == 0, run.output
    painted = ex.painted(21)
    expected = np.select([painted == 0, painted == 1], [255, 0], 1).astype(np.uint8)
    dataset = UnifiedDataset(tmp_path / "data" / "own")
    assert dataset.meta.classes == ["cat", "dog"] and np.array_equal(dataset.read_label("p1"), expected)
    assert dataset.meta.extra["void_values"] == [0]


def test_sixteen_bit_masks_are_indices_when_they_fit(tmp_path: Path) -> None:
    source, classes = folder(tmp_path, n=2)
    wide = ex.painted(21).astype(np.uint16)
    Image.fromarray(wide).save(source / "masks" / "p1.png")  # mode I;16
    assert prepare(source, tmp_path / "data", "--classes", str(classes)).exit_code == 0
    assert np.array_equal(UnifiedDataset(tmp_path / "data" / "own").read_label("p1"), ex.painted(21))
    wide[0, 0] = 300
    Image.fromarray(wide).save(source / "masks" / "p1.png")
    failed = prepare(source, tmp_path / "data", "--classes", str(classes))
    assert failed.exit_code == 2 and "values 300" in one_line_error(failed.output)


def test_rerun_after_editing_a_mask_converts_again(tmp_path: Path) -> None:
    source, classes = folder(tmp_path, n=2)
    assert prepare(source, tmp_path / "data", "--classes", str(classes)).exit_code == 0
    edited = np.full(ex.SIZE, 2, dtype=np.uint8)
    ex.save_index(source / "masks" / "p1.png", edited)
    rerun = prepare(source, tmp_path / "data", "--classes", str(classes))
    assert rerun.exit_code == 0 and rerun.report["converted"] == 2, rerun.output
    assert np.array_equal(UnifiedDataset(tmp_path / "data" / "own").read_label("p1"), edited)
    unchanged = prepare(source, tmp_path / "data", "--classes", str(classes))
    assert unchanged.report["reused"] == 2 and unchanged.report["converted"] == 0


def test_the_dataset_folder_may_not_be_the_export_it_reads(tmp_path: Path) -> None:
    """`--root` + NAME pointing at the --from folder would write the dataset into the user's export."""
    from tests.support.prepare_runner import run_prepare

    export = tmp_path / "exp"
    (export / "images").mkdir(parents=True)
    (export / "masks").mkdir()
    before = sorted(export.rglob("*"))
    result = run_prepare(["custom", "exp", "--from", str(export), "--root", str(tmp_path)])
    assert result.exit_code == 2 and "would overwrite the source" in result.output
    assert sorted(export.rglob("*")) == before


def test_a_dataset_name_with_a_path_in_it_is_refused(tmp_path: Path) -> None:
    """NAME `../x` or `a/b` would write (and lock) outside --root: one line, nothing created anywhere."""
    source, classes = folder(tmp_path)
    root = tmp_path / "deep" / "data"
    root.mkdir(parents=True)
    for name in ("../escaped", "a/b"):
        failed = prepare(source, root, "--classes", str(classes), name=name)
        assert failed.exit_code == 2 and "is not a plain folder name" in one_line_error(failed.output)
    assert list(root.iterdir()) == [] and sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["data"]


def test_one_huge_value_in_a_32_bit_mask_costs_nothing(tmp_path: Path) -> None:
    """A 1 KB 32-bit TIFF mask with one pixel of 3e8 built a 3e8-entry table (2.4 GB, 109 s) before the refusal."""
    import time

    from PIL import Image

    export = tmp_path / "export"
    painted = ex.folder_export(export, n=3)
    mask = painted["p1"].astype(np.int32)
    mask[2, 3] = 300_000_000
    (export / "masks" / "p1.png").unlink()
    Image.fromarray(mask, mode="I").save(export / "masks" / "p1.tif")
    classes = tmp_path / "classes.txt"
    classes.write_text("background\ncat\ndog\n")
    args = ["custom", "own", "--from", str(export), "--classes", str(classes), "--root", str(tmp_path / "d"), "-j", "1"]
    started = time.monotonic()
    run = run_prepare(args)
    assert run.exit_code == 2 and "values 300000000 that are in no class" in run.output, run.output
    run = run_prepare([*args, "--unknown-as-ignore"])
    assert run.exit_code == 0, run.output
    assert time.monotonic() - started < 20
    label = UnifiedDataset(tmp_path / "d" / "own").read_label("p1")
    assert label[2, 3] == 255 and np.array_equal(np.delete(label.ravel(), 2 * label.shape[1] + 3),
                                                  np.delete(painted["p1"].ravel(), 2 * label.shape[1] + 3))  # fmt: skip
