"""`refine export --int8`: calibrated on the user's data, scored against fp32, refused above --max-drop."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.checkpoints import fitted_tiny_checkpoint
from tests.support.cli import error_line, run_cli
from tests.support.tiny_seg import make_tiny_dataset

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Coloured shapes (train / val), a model fitted to them, and a `blank` split of flat grey images."""
    root = tmp_path_factory.mktemp("int8")
    data = make_tiny_dataset(root, train=8, val=4)
    blank = [f"blank_{index}" for index in range(4)]
    for sample_id in blank:  # calibrating on these leaves every activation range far too narrow
        cv2.imwrite(str(data / "images" / f"{sample_id}.png"), np.full((48, 64, 3), 30, np.uint8))
        shutil.copyfile(data / "labels" / "train_000.png", data / "labels" / f"{sample_id}.png")
    (data / "splits" / "blank.txt").write_text("\n".join(blank) + "\n")
    checkpoint = fitted_tiny_checkpoint(root / "fitted.pt", data)
    return {"root": root, "data": data, "ck": checkpoint}


def _export(trained: dict, out: Path, *extra: str):  # noqa: ANN202
    return run_cli("export", str(trained["ck"]), "--int8", "--calib", str(trained["data"]), "--out", str(out), *extra)


def test_int8_export_passes_the_gate_and_records_its_numbers(trained: dict, tmp_path: Path) -> None:
    from refine_cli.engine.infer.onnx_backend import read_card

    out = tmp_path / "q.onnx"
    result = _export(trained, out, "--json", str(tmp_path / "report.json"))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "mIoU fp32" in text and "int8" in text and "pixels changed label" in text
    assert "warning: the accuracy gate scores only 4 image(s) (val)" in text  # a small val split is named as such
    report = json.loads((tmp_path / "report.json").read_text())
    numbers = report["quantization"]["evaluation"]
    assert report["precision"] == "int8" and numbers["split"] == "val" and numbers["images"] == 4
    assert numbers["miou_fp32"] > 60, "the fitted model should segment the shapes"
    assert numbers["miou_drop"] == pytest.approx(numbers["miou_fp32"] - numbers["miou_int8"], abs=1e-2)
    assert numbers["miou_drop"] <= 1.0 and 0 <= numbers["changed_pixels"] < 0.2
    assert report["quantization"]["calibration"]["images"] == 8 and not report["quantization"]["forced"]
    card = read_card(out)
    assert card.precision == "int8" and card.quantization == report["quantization"]
    # int8 weights: about a quarter of the fp32 file (12.6 MiB); both runtimes score what the export measured
    assert out.stat().st_size < 6 * 2**20
    fp32 = run_cli("eval", "--checkpoint", str(trained["ck"]), "--data", str(trained["data"]), "--json", "-")
    assert json.loads(fp32.stdout)["miou"] * 100 == pytest.approx(numbers["miou_fp32"], abs=0.05)
    for runtime in ("onnxruntime", "openvino"):
        if runtime == "openvino":
            pytest.importorskip("openvino")
        scored = run_cli("eval", "--checkpoint", str(out), "--data", str(trained["data"]), "--runtime", runtime,
                       "--json", "-")  # fmt: skip
        assert scored.exit_code == 0, scored.output
        tolerance = 0.05 if runtime == "onnxruntime" else 1.0  # OpenVINO's int8 kernels round a little differently
        assert json.loads(scored.stdout)["miou"] * 100 == pytest.approx(numbers["miou_int8"], abs=tolerance)


def test_int8_export_refuses_a_bad_calibration_unless_forced(trained: dict, tmp_path: Path) -> None:
    out = tmp_path / "bad.onnx"
    result = _export(trained, out, "--calib-split", "blank")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "mIoU points (fp32" in text and "above --max-drop 1" in text and "nothing was written" in text
    assert not out.exists() and not list(tmp_path.iterdir())
    result = _export(trained, out, "--calib-split", "blank", "--force", "--json", "-")
    assert result.exit_code == 0, result.output
    quantization = json.loads(result.stdout)["quantization"]
    assert quantization["forced"] and quantization["evaluation"]["miou_drop"] > 1.0 and out.is_file()


def test_int8_calibration_never_scores_its_own_images() -> None:
    from refine_cli.engine.infer.quantize import split_for_calibration

    ids = [f"s{index}" for index in range(10)]
    chosen, held = split_for_calibration(ids, 100, hold_out=True)
    assert len(held) == 2 and len(chosen) == 8 and not set(chosen) & set(held)
    chosen, held = split_for_calibration(ids, 3, hold_out=False)
    assert len(chosen) == 3 and held == []
    assert split_for_calibration(ids, 3, hold_out=False) == (chosen, held)  # seeded: the same sample every run


def test_int8_options_are_refused_where_they_mean_nothing(trained: dict, tmp_path: Path) -> None:
    checkpoint = str(trained["ck"])
    result = run_cli("export", checkpoint, "--int8", "--out", str(tmp_path / "a.onnx"))
    assert result.exit_code == 2 and "--calib DATASET" in " ".join(result.output.split())
    result = run_cli("export", checkpoint, "--calib", str(trained["data"]), "--out", str(tmp_path / "b.onnx"))
    assert result.exit_code == 2 and "--calib is for --int8" in result.output
    result = run_cli("predict", str(trained["data"] / "images"), "-c", checkpoint, "--out", str(tmp_path / "p"),
                   "--precision", "int8")  # fmt: skip
    assert result.exit_code == 2 and "refine export CK --int8" in " ".join(result.output.split())
    result = run_cli("export", checkpoint, "--max-drop", "3", "--quantizer", "nncf", "--out", tmp_path / "c.onnx")
    assert "--max-drop, --quantizer are for --int8 exports" in error_line(result, alone=True)
    result = _export(trained, tmp_path / "d.onnx", "--static", "64x64")
    assert "--static fixes one size" in error_line(result, alone=True)
    other = tmp_path / "other"  # a dataset of another class count: refused before the export starts
    shutil.copytree(trained["data"], other)
    meta = json.loads((other / "meta.json").read_text())
    meta.update(classes=[*meta["classes"], "extra"], palette=[*meta["palette"], [1, 2, 3]])
    (other / "meta.json").write_text(json.dumps(meta))
    result = run_cli("export", checkpoint, "--int8", "--calib", other, "--out", tmp_path / "e.onnx")
    assert "classes" in error_line(result) and "calibrating" not in result.output
    assert not any((tmp_path / name).exists() for name in ("c.onnx", "d.onnx", "e.onnx"))


def test_calibration_images_are_the_views_the_loop_feeds() -> None:
    """Calibrated on what inference runs: the loop's normalisation, its working-size resize, its tile bound."""
    from refine_cli.data.load.normalize import normalize_image
    from refine_cli.engine.infer import loop
    from refine_cli.engine.infer.quantize import normalised_batch
    from refine_cli.engine.infer.tta import resize_images

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    image = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    loop_view = normalize_image(image, "cpu", mean, std)[None]
    assert np.array_equal(normalised_batch(image, mean, std), loop_view.numpy())
    assert np.array_equal(normalised_batch(image, mean, std, 35), resize_images(loop_view, (35, 45)).numpy())
    side = loop.AUTO_TILE[0] * 3  # over the tile budget: the centre window only
    huge = np.zeros((side, side, 3), np.uint8)
    assert normalised_batch(huge, mean, std).shape == (1, 3, *loop.AUTO_TILE)
