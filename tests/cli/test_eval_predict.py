"""`refine eval` and `refine predict` end to end on the session's shapes dataset and tiny checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.checkpoints import save_tiny_checkpoint
from tests.support.cli import error_line, run_cli
from tests.support.workspaces import ShapesWorkspace


def test_eval_checkpoint_with_msc_flip_json_and_save_pred(shapes_workspace: ShapesWorkspace, tmp_path: Path) -> None:
    ws = shapes_workspace
    report_path = tmp_path / "report.json"
    result = run_cli("eval", "--checkpoint", ws.checkpoint, "--data", ws.data, "--split", "val", "--msc", "--flip",
                     "--json", report_path, "--save-pred", tmp_path / "pred", "--device", "cpu",
                     "--limit", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "scales 0.5, 0.75, 1, 1.25, 1.5 | flip on | CRF off" in result.output
    assert "mIoU" in result.output and "circle" in result.output
    report = json.loads(report_path.read_text())
    assert report["scales"] == [0.5, 0.75, 1.0, 1.25, 1.5] and report["flip"] is True
    assert report["checkpoint"] == str(ws.checkpoint) and report["num_images"] == 1
    for key in ("miou", "pixel_acc", "mean_acc", "fwiou"):
        assert 0.0 <= report[key] <= 1.0
    assert [path.stem for path in (tmp_path / "pred").iterdir()] == ws.dataset.split_ids("val")[:1]
    # the saved predictions score exactly the same through --pred
    rescored = run_cli("eval", "--pred", tmp_path / "pred", "--data", ws.data, "--limit", "1", "--json", "-")
    assert rescored.exit_code == 0, rescored.output
    assert json.loads(rescored.stdout)["miou"] == pytest.approx(report["miou"])


def test_eval_refusals_are_one_line(shapes_workspace: ShapesWorkspace, tmp_path: Path) -> None:
    """A checkpoint of another class count, a missing split, and --pred folders that do not fit the dataset."""
    from refine_cli.models import create_model
    from refine_cli.models.checkpoint import save_checkpoint

    ws = shapes_workspace
    wrong = tmp_path / "wrong.pt"
    model = create_model("lw-refinenet-mobilenetv2", 3)
    save_checkpoint(wrong, model_name=model.model_name, model=model, num_classes=3)
    json_out = tmp_path / "r.json"  # never written by a refused run
    line = error_line(run_cli("eval", "--checkpoint", wrong, "--data", ws.data, "--device", "cpu", "--json", json_out))
    assert "predicts 3 classes but dataset shapes has 6" in line
    split = ["eval", "--checkpoint", ws.checkpoint, "--data", ws.data, "--split", "test", "--device", "cpu"]
    assert "no split 'test'" in error_line(run_cli(*split, "--json", json_out))
    pred_dir = tmp_path / "p"
    pred_dir.mkdir()
    val = ws.dataset.split_ids("val")
    Image.fromarray(ws.dataset.read_label(val[0]).clip(0, 5)).save(pred_dir / f"{val[0]}.png")
    scored = ["eval", "--pred", pred_dir, "--data", ws.data, "--json", json_out]
    assert f"{val[1]}.png" in error_line(run_cli(*scored))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(pred_dir / f"{val[1]}.png")
    assert f"{val[1]}.png is 8x8" in error_line(run_cli(*scored))
    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(pred_dir / f"{val[1]}.png")
    assert "contains class 7" in error_line(run_cli(*scored))
    assert not json_out.exists()


def test_predict_writes_labels_overlays_probs_and_skips_bad_files(
    shapes_workspace: ShapesWorkspace, tmp_path: Path
) -> None:
    ws, dataset = shapes_workspace, shapes_workspace.dataset
    images = tmp_path / "in"
    images.mkdir()
    for sample_id in dataset.split_ids("val"):
        (images / f"{sample_id}.jpg").write_bytes(dataset.image_path(sample_id).read_bytes())
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    result = run_cli("predict", images, "--checkpoint", ws.checkpoint, "--out", out, "--overlay", "--probs",
                     "--batch", "2", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    unwrapped = result.output.replace("\n", "")  # Rich folds a long path at the terminal width
    assert "skipped" in unwrapped and "broken.jpg" in unwrapped
    for sample_id in dataset.split_ids("val"):
        label = Image.open(out / f"{sample_id}.png")
        assert label.mode == "P" and label.size == (64, 64)
        assert label.getpalette()[3:6] == dataset.meta.palette[1]
        assert (out / f"{sample_id}_overlay.jpg").stat().st_size > 0
        probs = np.load(out / f"{sample_id}_probs.npz")["probs"]
        assert probs.shape == (6, 64, 64) and probs.dtype == np.float16
        top_two = np.sort(probs.astype(np.float32), axis=0)[-2:]
        clear = top_two[1] - top_two[0] > 1e-3  # not a near-tie that float16 rounding can flip
        assert clear.mean() > 0.5 and len(np.unique(np.array(label))) > 1
        assert np.array_equal(probs.astype(np.float32).argmax(0)[clear], np.array(label)[clear])
    assert not (out / "broken.png").exists()


def test_overlay_outlines_every_region_in_its_class_colour() -> None:
    from refine_cli.data.format.palette import overlay, palette_array

    table = palette_array([[0, 0, 0], [200, 30, 30], [30, 200, 30]], 3)
    label = np.zeros((40, 40), np.uint8)
    label[10:30, 10:30] = 1
    label[15:25, 15:25] = 2
    image = np.full((40, 40, 3), 128, np.uint8)
    drawn = overlay(image, label, table, alpha=0.3)
    assert tuple(drawn[10, 20]) == (200, 30, 30) and tuple(drawn[15, 20]) == (30, 200, 30)  # borders, full colour
    assert tuple(drawn[12, 20]) not in ((200, 30, 30), (128, 128, 128))  # inside: blended at alpha 0.3
    assert tuple(overlay(image, label, table, alpha=0.0)[12, 20]) == (128, 128, 128)  # 0: only the outlines


def test_predict_overlay_alpha_and_legend(shapes_workspace: ShapesWorkspace, tmp_path: Path) -> None:
    """Overlays had no outlines, no legend and a fixed opacity: --alpha and --legend style them."""
    image = sorted(shapes_workspace.images.iterdir())[0]
    base = ["predict", str(image), "--checkpoint", str(shapes_workspace.checkpoint), "--device", "cpu", "--overlay"]
    plain = run_cli(*[*base, "--out", str(tmp_path / "plain"), "--alpha", "0"])
    assert plain.exit_code == 0, plain.output
    styled = run_cli(*[*base, "--out", str(tmp_path / "styled"), "--alpha", "1", "--legend"])
    assert styled.exit_code == 0, styled.output
    name = f"{image.stem}_overlay.jpg"
    thin = np.asarray(Image.open(tmp_path / "plain" / name).convert("RGB")).astype(int)
    legend = np.asarray(Image.open(tmp_path / "styled" / name).convert("RGB")).astype(int)
    source = np.asarray(Image.open(image).convert("RGB")).astype(int)
    assert thin.shape == source.shape and legend.shape[1] == 64 and legend.shape[0] > 64  # a legend strip below
    assert np.abs(legend[:64] - thin).mean() > 10  # opacity 1 against 0: the labels' colours replace the photo
    strip = legend[64:]
    assert (strip > 230).all(axis=2).mean() > 0.4 and (strip < 100).all(axis=2).sum() > 20  # white with dark text
    line = [
        part for part in run_cli(*[*base[:-1], "--out", str(tmp_path / "no"), "--legend"]).output.splitlines() if part
    ]
    assert line == ["error: --legend styles the overlay, drawn only with --overlay (add --overlay)"]
    assert run_cli(*[*base, "--out", str(tmp_path / "x"), "--alpha", "1.5"]).exit_code == 2


def test_predict_nothing_processed_and_unwritable_out(shapes_workspace: ShapesWorkspace, tmp_path: Path) -> None:
    checkpoint = shapes_workspace.checkpoint
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    line = error_line(run_cli("predict", bad, "--checkpoint", checkpoint, "--out", tmp_path / "o" / "p"))
    assert "none of the 1 input(s) could be processed" in line
    assert not (tmp_path / "o").exists()  # the folders it made for nothing are gone again
    kept = tmp_path / "kept"
    kept.mkdir()
    error_line(run_cli("predict", bad, "--checkpoint", checkpoint, "--out", kept))
    assert kept.is_dir()  # a folder the user had is never removed
    blocker = tmp_path / "file"
    blocker.write_text("x")
    image = sorted(shapes_workspace.images.iterdir())[0]
    line = error_line(run_cli("predict", image, "--checkpoint", checkpoint, "--out", blocker / "sub"))
    assert "output folder" in line and "is not writable" in line and blocker.read_text() == "x"


ID_MAP = [7, 8, 11, 12, 13, 17]  # class index -> source id, as Cityscapes' trainId -> labelId


def _label_ids(image: Path, checkpoint: Path, tmp_path: Path, *extra: str | Path) -> tuple[np.ndarray, Image.Image]:
    """(class-index labels, the --label-ids image) that `refine predict` writes for one image."""
    common = ["predict", image, "--checkpoint", checkpoint, "--device", "cpu"]
    plain = run_cli(*common, "--out", tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    mapped = run_cli(*common, "--out", tmp_path / "ids", "--label-ids", *extra)
    assert mapped.exit_code == 0, mapped.output
    classes = np.array(Image.open(tmp_path / "plain" / f"{image.stem}.png"))
    assert len(np.unique(classes)) > 1  # several classes, so a wrong map or none would show
    return classes, Image.open(tmp_path / "ids" / f"{image.stem}.png")


def test_predict_label_ids_through_the_checkpoints_map(shapes_workspace: ShapesWorkspace, tmp_path: Path) -> None:
    """--label-ids writes source ids (e.g. Cityscapes labelIds) for benchmark servers, mapped as the checkpoint says."""
    meta = shapes_workspace.dataset.meta
    facts = {"name": "cs", "extra": {"train_id_to_label_id": ID_MAP}}
    mapped = save_tiny_checkpoint(tmp_path / "mapped.pt", meta.classes, meta.palette, extra={"dataset": facts})
    image = sorted(shapes_workspace.images.iterdir())[0]
    classes, written = _label_ids(image, mapped, tmp_path)
    assert written.mode == "L"
    np.testing.assert_array_equal(np.array(written), np.array(ID_MAP, dtype=np.uint8)[classes])
    # a checkpoint without a map says so; the shapes dataset has none either
    unmapped = ["predict", image, "--checkpoint", shapes_workspace.checkpoint, "--label-ids"]
    assert "train_id_to_label_id" in error_line(run_cli(*unmapped, "--out", tmp_path / "x"))
    line = error_line(run_cli(*unmapped, "--out", tmp_path / "y", "--label-map", shapes_workspace.data))
    assert "meta.json has no class-index" in line and not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_predict_label_ids_through_a_datasets_map(shapes_workspace: ShapesWorkspace, tmp_path: Path) -> None:
    """--label-ids --label-map DATA: a checkpoint without a map uses the dataset's train_id_to_label_id."""
    data = tmp_path / "mapped"
    shutil.copytree(shapes_workspace.data, data)
    meta = json.loads((data / "meta.json").read_text())
    meta["extra"]["train_id_to_label_id"] = ID_MAP
    (data / "meta.json").write_text(json.dumps(meta))
    image = sorted(shapes_workspace.images.iterdir())[0]
    classes, written = _label_ids(image, shapes_workspace.checkpoint, tmp_path, "--label-map", data)
    assert written.mode == "L"
    np.testing.assert_array_equal(np.array(written), np.array(ID_MAP, np.uint8)[classes])


def test_pixel_bombs_are_skipped_by_predict_and_refused_by_eval_and_check(
    shapes_workspace: ShapesWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 2 KB file claiming 30000x30000: predict reports and skips it; eval and check stop with one line."""
    from tests.support.bombs import jpeg_bomb, png_bomb

    monkeypatch.setenv("REFINE_MAX_PIXELS", "")  # restored after the test: --max-pixels below sets it
    ws = shapes_workspace
    (tmp_path / "bomb.png").write_bytes(png_bomb())
    shutil.copy(sorted(ws.images.iterdir())[0], tmp_path / "good.jpg")
    result = run_cli("predict", tmp_path / "bomb.png", tmp_path / "good.jpg", "--checkpoint", ws.checkpoint,
                     "--out", tmp_path / "pred", "--device", "cpu", "--json", "-")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["processed"] == 1 and "over the 100 Mpixel limit" in report["failed"][0]["reason"]
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["good.png"]

    data = tmp_path / "data"
    shutil.copytree(ws.data, data)
    dataset = type(ws.dataset)(data)
    dataset.image_path(dataset.split_ids("val")[0]).write_bytes(jpeg_bomb())
    evaluated = run_cli("eval", "--checkpoint", ws.checkpoint, "--data", data, "--split", "val", "--device", "cpu")
    assert "claims 30000x30000" in error_line(evaluated)
    assert "claims 30000x30000" in error_line(run_cli("check", data))
    unlimited = run_cli("--max-pixels", "0", "check", data)  # no limit: the header is then believed
    assert "claims 30000x30000" not in unlimited.output


def test_an_overlay_too_wide_for_jpeg_is_reported_not_counted(
    shapes_workspace: ShapesWorkspace, tmp_path: Path
) -> None:
    """A 65,600 px wide image: the label PNG is written, the overlay JPEG cannot be, and the run says so."""
    images = tmp_path / "in"
    images.mkdir()
    Image.fromarray(np.full((4, 65_600, 3), 120, np.uint8)).save(images / "wide.png")
    out = tmp_path / "out"
    result = run_cli("predict", images, "--checkpoint", shapes_workspace.checkpoint, "--out", out, "--overlay",
                     "--device", "cpu", "--json", tmp_path / "r.json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert Image.open(out / "wide.png").size == (65_600, 4) and not (out / "wide_overlay.jpg").exists()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["outputs"] == [str(out / "wide.png")]
    assert report["not_written"][0]["output"] == str(out / "wide_overlay.jpg")
    assert "not written" in result.output and "65500 pixels per side" in " ".join(result.output.split())
