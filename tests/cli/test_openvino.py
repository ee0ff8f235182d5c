"""`--runtime openvino`: refine's .onnx run by OpenVINO through the one inference loop, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.checkpoints import shapes_with_checkpoint
from tests.support.cli import run_cli

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("openvino")
    data, checkpoint = shapes_with_checkpoint(root, 10)
    onnx_path = root / "tiny.onnx"
    result = run_cli("export", str(checkpoint), "--out", str(onnx_path))
    assert result.exit_code == 0, result.output
    return {"root": root, "data": data, "ck": checkpoint, "onnx": onnx_path}


def _labels(folder: Path) -> dict[str, np.ndarray]:
    return {path.name: np.array(Image.open(path)) for path in sorted(folder.glob("*.png"))}


def test_openvino_labels_equal_onnxruntime(exported: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fp32 OpenVINO gives ONNX Runtime's labels (>= 99.99% of pixels), with TTA and tiles through the same loop."""
    monkeypatch.setenv("REFINE_OPENVINO_CACHE", str(tmp_path / "cache"))
    labels = {}
    for runtime in ("onnxruntime", "openvino"):
        out = tmp_path / runtime
        tta = ["--msc", "0.75,1", "--flip", "--tile", "48x48"]
        result = run_cli("predict", str(exported["data"] / "images"), "--checkpoint", str(exported["onnx"]), "--out",
                       str(out), "--runtime", runtime, *tta, "--json", "-")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["runtime"] == runtime
        labels[runtime] = _labels(out)
    assert len(labels["openvino"]) == 10 and labels["openvino"].keys() == labels["onnxruntime"].keys()
    same = sum(int((labels["openvino"][k] == labels["onnxruntime"][k]).sum()) for k in labels["openvino"])
    total = sum(label.size for label in labels["openvino"].values())
    assert same / total >= 0.9999
    assert len({int(v) for label in labels["openvino"].values() for v in np.unique(label)}) > 1  # not one class
    assert list((tmp_path / "cache").glob("*.blob")), "the compiled model was not cached"


def test_openvino_eval_scores_like_onnxruntime(exported: dict) -> None:
    scores = {}
    for runtime in ("onnxruntime", "openvino"):
        result = run_cli("eval", "--checkpoint", str(exported["onnx"]), "--data", str(exported["data"]), "--runtime",
                       runtime, "--json", "-")  # fmt: skip
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["runtime"] == runtime and report["precision"] == "fp32"
        scores[runtime] = report["miou"]
    assert scores["openvino"] == pytest.approx(scores["onnxruntime"], abs=1e-3)


def _one_line_error(result, *needles: str) -> None:  # noqa: ANN001
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") or any(line.startswith("error:") for line in lines)
    for needle in needles:
        assert needle in " ".join(result.output.split()), result.output


def test_openvino_refuses_damaged_and_foreign_files(exported: dict, tmp_path: Path) -> None:
    import onnx

    cut = tmp_path / "cut.onnx"
    cut.write_bytes(exported["onnx"].read_bytes()[:5000])
    images = str(exported["data"] / "images")
    result = run_cli(
        "predict", images, "--checkpoint", str(cut), "--out", str(tmp_path / "p1"), "--runtime", "openvino"
    )
    _one_line_error(result, "is not a readable ONNX model (OpenVINO")
    foreign = tmp_path / "foreign.onnx"
    model = onnx.load(str(exported["onnx"]))
    del model.metadata_props[:]
    onnx.save(model, str(foreign))
    result = run_cli("predict", images, "--checkpoint", str(foreign), "--out", str(tmp_path / "p2"), "--runtime",
                   "openvino")  # fmt: skip
    _one_line_error(result, "without refine metadata")
    result = run_cli("predict", images, "--checkpoint", str(exported["ck"]), "--out", str(tmp_path / "p3"),
                   "--runtime", "openvino")  # fmt: skip
    _one_line_error(result, "runs refine's ONNX files", "refine export")
    assert not (tmp_path / "p1").exists() and not (tmp_path / "p3").exists()


def test_openvino_precision_is_set_not_defaulted(exported: dict) -> None:
    """OpenVINO's CPU default is bf16 where the CPU has it: fp32 must be asked for explicitly."""
    import torch

    from refine_cli.engine.infer.loop import load_model
    from refine_cli.engine.infer.openvino_backend import cpu_has_bf16

    loaded = load_model(exported["onnx"], "cpu", runtime="openvino")
    assert str(loaded.backend.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    assert loaded.backend.precision == "fp32"
    if cpu_has_bf16():
        fast = load_model(exported["onnx"], "cpu", precision="bf16", runtime="openvino")
        assert "bfloat16" in str(fast.backend.compiled.get_property("INFERENCE_PRECISION_HINT"))
        x = torch.randn(1, 3, 64, 64)
        assert not torch.equal(fast.backend(x), loaded.backend(x))


def test_bench_times_openvino_and_int8(exported: dict, tmp_path: Path) -> None:
    result = run_cli("bench", "-m", "lw-refinenet-mobilenetv2", "--size", "64", "--warmup", "1", "--iters", "2",
                   "--num-classes", "3", "--threads", "1", "--precision", "int8", "--json", "-")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["runtime"] for row in rows] == ["onnxruntime", "openvino"]
    assert all(row["precision"] == "int8" and "timing only" in row["calibration"] for row in rows)
    assert "int8 QDQ" in rows[0]["onnxruntime"]["graph"] and rows[1]["openvino"]["inference_precision"] == "f32"
    result = run_cli("bench", "--checkpoint", str(exported["onnx"]), "--runtime", "openvino", "--size", "64",
                   "--warmup", "1", "--iters", "2", "--json", "-")  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["runtime"] == "openvino" and row["model"] == "lw-refinenet-mobilenetv2" and row["num_classes"] == 6
    assert row["openvino"]["graph"].startswith("the exported file tiny.onnx") and row["latency_ms"]["mean"] > 0
    assert row["label"] == "lw-refinenet-mobilenetv2 (tiny.onnx)" and row["bn_folded"] > 0
    result = run_cli("bench", "-m", "lw-refinenet-mobilenetv2", "--precision", "int8", "--runtime", "torch")
    _one_line_error(result, "int8 runs a quantised ONNX graph")
