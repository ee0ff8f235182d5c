"""`refine eval`, `refine predict` and `refine prepare shapes` end to end on a tiny shapes dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.format.unified import UnifiedDataset


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from refine_cli.models import create_model
    from refine_cli.models.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("ws")
    result = CliRunner().invoke(app, ["prepare", "shapes", "--root", str(root), "--n", "8", "--size", "64"])
    assert result.exit_code == 0, result.output
    data = root / "shapes"
    meta = UnifiedDataset(data).meta
    torch.manual_seed(0)
    model = create_model("lw-refinenet-mobilenetv2", num_classes=6)
    checkpoint = root / "tiny.pt"
    save_checkpoint(
        checkpoint, model_name="lw-refinenet-mobilenetv2", model=model, num_classes=6,
        classes=meta.classes, palette=meta.palette,
    )  # fmt: skip
    wrong = root / "wrong.pt"
    save_checkpoint(wrong, model_name="lw-refinenet-mobilenetv2", model=create_model("lw-refinenet-mobilenetv2", 3),
                    num_classes=3)  # fmt: skip
    return {"root": root, "data": data, "ck": checkpoint, "wrong": wrong}


def _run(args: list[str]):  # noqa: ANN202 - click Result
    return CliRunner().invoke(app, args)


def test_prepare_shapes_writes_the_dataset(workspace: dict[str, Path]) -> None:
    dataset = UnifiedDataset(workspace["data"])
    assert len(dataset.split_ids("train")) + len(dataset.split_ids("val")) == 8


def test_eval_checkpoint_with_msc_flip_json_and_save_pred(workspace: dict[str, Path], tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    args = ["eval", "--checkpoint", str(workspace["ck"]), "--data", str(workspace["data"]), "--split", "val",
            "--msc", "--flip", "--json", str(report_path), "--save-pred", str(tmp_path / "pred"), "--device", "cpu",
            "--limit", "1"]  # fmt: skip
    result = _run(args)
    assert result.exit_code == 0, result.output
    assert "scales 0.5, 0.75, 1, 1.25, 1.5 | flip on | CRF off" in result.output
    assert "mIoU" in result.output and "circle" in result.output
    report = json.loads(report_path.read_text())
    assert report["scales"] == [0.5, 0.75, 1.0, 1.25, 1.5] and report["flip"] is True
    assert report["checkpoint"] == str(workspace["ck"]) and report["num_images"] == 1
    for key in ("miou", "pixel_acc", "mean_acc", "fwiou"):
        assert 0.0 <= report[key] <= 1.0
    # the saved predictions score exactly the same through --pred
    pred_args = ["eval", "--pred", str(tmp_path / "pred"), "--data", str(workspace["data"]), "--limit", "1"]
    rescored = _run([*pred_args, "--json", "-"])
    assert rescored.exit_code == 0, rescored.output
    assert json.loads(rescored.stdout)["miou"] == pytest.approx(report["miou"])


def test_eval_errors_are_one_line(workspace: dict[str, Path], tmp_path: Path) -> None:
    data = str(workspace["data"])
    wrong = _run(["eval", "--checkpoint", str(workspace["wrong"]), "--data", data, "--device", "cpu"])
    assert (
        wrong.exit_code == 2
        and "predicts 3 classes but dataset shapes has 6" in wrong.output
        and "Traceback" not in wrong.output
    )
    split = _run(["eval", "--checkpoint", str(workspace["ck"]), "--data", data, "--split", "test", "--device", "cpu"])
    assert split.exit_code == 2 and "no split 'test'" in split.output
    pred_dir = tmp_path / "p"
    pred_dir.mkdir()
    dataset = UnifiedDataset(workspace["data"])
    val = dataset.split_ids("val")
    Image.fromarray(dataset.read_label(val[0]).clip(0, 5)).save(pred_dir / f"{val[0]}.png")
    missing = _run(["eval", "--pred", str(pred_dir), "--data", data])
    assert missing.exit_code == 2 and f"{val[1]}.png" in missing.output
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(pred_dir / f"{val[1]}.png")
    size = _run(["eval", "--pred", str(pred_dir), "--data", data])
    assert size.exit_code == 2 and f"{val[1]}.png is 8x8" in size.output
    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(pred_dir / f"{val[1]}.png")
    out_of_range = _run(["eval", "--pred", str(pred_dir), "--data", data])
    assert out_of_range.exit_code == 2 and "contains class 7" in out_of_range.output


def test_predict_writes_labels_overlays_probs_and_skips_bad_files(workspace: dict[str, Path], tmp_path: Path) -> None:
    images = tmp_path / "in"
    images.mkdir()
    dataset = UnifiedDataset(workspace["data"])
    for sample_id in dataset.split_ids("val"):
        (images / f"{sample_id}.jpg").write_bytes(dataset.image_path(sample_id).read_bytes())
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    args = ["predict", str(images), "--checkpoint", str(workspace["ck"]), "--out", str(out), "--overlay", "--probs",
            "--batch", "2", "--device", "cpu"]  # fmt: skip
    result = _run(args)
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "broken.jpg" in result.output
    for sample_id in dataset.split_ids("val"):
        label = Image.open(out / f"{sample_id}.png")
        assert label.mode == "P" and label.size == (64, 64)
        assert label.getpalette()[3:6] == dataset.meta.palette[1]
        assert (out / f"{sample_id}_overlay.jpg").stat().st_size > 0
        probs = np.load(out / f"{sample_id}_probs.npz")["probs"]
        assert probs.shape == (6, 64, 64) and probs.dtype == np.float16
        assert np.array_equal(probs.astype(np.float32).argmax(0), np.array(label))
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


def test_predict_overlay_alpha_and_legend(workspace: dict[str, Path], tmp_path: Path) -> None:
    """Overlays had no outlines, no legend and a fixed opacity: --alpha and --legend style them."""
    image = sorted((workspace["data"] / "images").iterdir())[0]
    base = ["predict", str(image), "--checkpoint", str(workspace["ck"]), "--device", "cpu", "--overlay"]
    plain = _run([*base, "--out", str(tmp_path / "plain"), "--alpha", "0"])
    assert plain.exit_code == 0, plain.output
    styled = _run([*base, "--out", str(tmp_path / "styled"), "--alpha", "1", "--legend"])
    assert styled.exit_code == 0, styled.output
    name = f"{image.stem}_overlay.jpg"
    thin = np.asarray(Image.open(tmp_path / "plain" / name).convert("RGB")).astype(int)
    legend = np.asarray(Image.open(tmp_path / "styled" / name).convert("RGB")).astype(int)
    source = np.asarray(Image.open(image).convert("RGB")).astype(int)
    assert thin.shape == source.shape and legend.shape[1] == 64 and legend.shape[0] > 64  # a legend strip below
    assert np.abs(legend[:64] - thin).mean() > 10  # opacity 1 against 0: the labels' colours replace the photo
    strip = legend[64:]
    assert (strip > 230).all(axis=2).mean() > 0.4 and (strip < 100).all(axis=2).sum() > 20  # white with dark text
    line = [part for part in _run([*base[:-1], "--out", str(tmp_path / "no"), "--legend"]).output.splitlines() if part]
    assert line == ["error: --legend styles the overlay, drawn only with --overlay (add --overlay)"]
    assert _run([*base, "--out", str(tmp_path / "x"), "--alpha", "1.5"]).exit_code == 2


def test_predict_nothing_processed_and_unwritable_out(workspace: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    nothing = _run(["predict", str(bad), "--checkpoint", str(workspace["ck"]), "--out", str(tmp_path / "o" / "p")])
    assert nothing.exit_code == 2 and "none of the 1 input(s) could be processed" in nothing.output
    assert not (tmp_path / "o").exists()  # the folders it made for nothing are gone again
    kept = tmp_path / "kept"
    kept.mkdir()
    again = _run(["predict", str(bad), "--checkpoint", str(workspace["ck"]), "--out", str(kept)])
    assert again.exit_code == 2 and kept.is_dir()  # a folder the user had is never removed
    blocker = tmp_path / "file"
    blocker.write_text("x")
    image = next((workspace["data"] / "images").iterdir())
    unwritable = _run(["predict", str(image), "--checkpoint", str(workspace["ck"]), "--out", str(blocker / "sub")])
    assert unwritable.exit_code == 2 and "output folder" in unwritable.output and "is not writable" in unwritable.output


def test_predict_label_ids_for_benchmark_servers(workspace: dict[str, Path], tmp_path: Path) -> None:
    """--label-ids writes source ids (e.g. Cityscapes labelIds) through the map in the checkpoint or dataset."""
    from refine_cli.models import create_model
    from refine_cli.models.checkpoint import save_checkpoint

    id_map = [7, 8, 11, 12, 13, 17]  # class index -> source id, as Cityscapes' trainId -> labelId
    mapped = tmp_path / "mapped.pt"
    dataset_facts = {"name": "cs", "extra": {"train_id_to_label_id": id_map}}
    model = create_model("lw-refinenet-mobilenetv2", 6)
    save_checkpoint(mapped, model_name=model.model_name, model=model, num_classes=6, extra={"dataset": dataset_facts})
    image = next((workspace["data"] / "images").iterdir())
    plain, ids = tmp_path / "plain", tmp_path / "ids"
    common = ["predict", str(image), "--checkpoint", str(mapped), "--device", "cpu"]
    assert _run([*common, "--out", str(plain)]).exit_code == 0
    result = _run([*common, "--out", str(ids), "--label-ids"])
    assert result.exit_code == 0, result.output
    classes = np.array(Image.open(plain / f"{image.stem}.png"))
    written = Image.open(ids / f"{image.stem}.png")
    assert written.mode == "L"
    np.testing.assert_array_equal(np.array(written), np.array(id_map, dtype=np.uint8)[classes])
    # a checkpoint without a map says so; the shapes dataset has none either
    unmapped = ["predict", str(image), "--checkpoint", str(workspace["ck"]), "--label-ids"]
    missing = _run([*unmapped, "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "train_id_to_label_id" in missing.output
    from_data = _run([*unmapped, "--out", str(tmp_path / "y"), "--label-map", str(workspace["data"])])
    assert from_data.exit_code == 2 and "meta.json has no class-index" in from_data.output


def test_pixel_bombs_are_skipped_by_predict_and_refused_by_eval_and_check(
    workspace: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 2 KB file claiming 30000x30000: predict reports and skips it; eval and check stop with one line."""
    import shutil

    monkeypatch.setenv("REFINE_MAX_PIXELS", "")  # restored after the test: --max-pixels below sets it

    from tests.support.bombs import jpeg_bomb, png_bomb

    (tmp_path / "bomb.png").write_bytes(png_bomb())
    good = next(iter(sorted((workspace["data"] / "images").iterdir())))
    shutil.copy(good, tmp_path / "good.jpg")
    inputs = [str(tmp_path / "bomb.png"), str(tmp_path / "good.jpg")]
    result = _run(["predict", *inputs, "--checkpoint", str(workspace["ck"]), "--out", str(tmp_path / "pred"),
                   "--device", "cpu", "--json", "-"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["processed"] == 1 and "over the 100 Mpixel limit" in report["failed"][0]["reason"]
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["good.png"]

    data = tmp_path / "data"
    shutil.copytree(workspace["data"], data)
    victim = UnifiedDataset(data).image_path(UnifiedDataset(data).split_ids("val")[0])
    victim.write_bytes(jpeg_bomb())
    result = _run(["eval", "--checkpoint", str(workspace["ck"]), "--data", str(data), "--split", "val",
                   "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 2 and "claims 30000x30000" in result.output and "Traceback" not in result.output
    result = _run(["check", str(data)])
    assert result.exit_code == 2 and "claims 30000x30000" in result.output
    result = _run(["--max-pixels", "0", "check", str(data)])  # no limit: the header is then believed
    assert "claims 30000x30000" not in result.output


def test_an_overlay_too_wide_for_jpeg_is_reported_not_counted(workspace: dict[str, Path], tmp_path: Path) -> None:
    """A 65,600 px wide image: the label PNG is written, the overlay JPEG cannot be, and the run says so."""
    images = tmp_path / "in"
    images.mkdir()
    Image.fromarray(np.full((4, 65_600, 3), 120, np.uint8)).save(images / "wide.png")
    out = tmp_path / "out"
    args = ["predict", str(images), "--checkpoint", str(workspace["ck"]), "--out", str(out), "--overlay",
            "--device", "cpu", "--json", str(tmp_path / "r.json")]  # fmt: skip
    result = _run(args)
    assert result.exit_code == 0, result.output
    assert Image.open(out / "wide.png").size == (65_600, 4) and not (out / "wide_overlay.jpg").exists()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["outputs"] == [str(out / "wide.png")]
    assert report["not_written"][0]["output"] == str(out / "wide_overlay.jpg")
    assert "not written" in result.output and "65500 pixels per side" in " ".join(result.output.split())
