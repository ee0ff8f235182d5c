"""ONNX files that lie: metadata out of range or a graph whose output does not match its class table.

A tiny graph (one 4x4 stride-4 convolution, the output stride of the RefineNet family) is built with
onnx.helper, so each case costs milliseconds; `refine predict` must refuse each one in one line and
write nothing, where it used to produce label maps with exit code 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from refine_cli.cli.app import app

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _card(num_classes: int, **changes: object) -> dict[str, str]:
    values = {
        "format": "refine-onnx", "format_version": 1, "model": "lw-refinenet-mobilenetv2",
        "num_classes": num_classes, "classes": [f"c{i}" for i in range(num_classes)],
        "palette": [[i, i, i] for i in range(num_classes)], "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225], "output_stride": 4, "ignore_index": 255, "label_id_map": None,
        "static_size": None, "precision": "fp32", "source": {},
    }  # fmt: skip
    values.update(changes)
    return {f"refine.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def _graph(path: Path, channels: int, props: dict[str, str]) -> Path:
    """images (N,3,H,W) -> Conv(channels, 4x4, stride 4) -> logits (N,channels,H/4,W/4), with metadata."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(channels, 3, 4, 4)).astype(np.float32), "w")
    node = helper.make_node("Conv", ["images", "w"], ["logits"], kernel_shape=[4, 4], strides=[4, 4])
    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", channels, "h", "w"])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, props)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(folder / "a.png")
    return folder


def _predict(model: Path, photos: Path, out: Path):  # noqa: ANN202 - click Result
    return CliRunner().invoke(app, ["predict", str(photos), "--checkpoint", str(model), "--out", str(out)])


def test_a_sound_tiny_graph_predicts(tmp_path: Path, photos: Path) -> None:
    result = _predict(_graph(tmp_path / "ok.onnx", 6, _card(6)), photos, tmp_path / "out")
    assert result.exit_code == 0, result.output
    label = np.array(Image.open(tmp_path / "out" / "a.png"))
    assert label.shape == (32, 48) and label.max() < 6


@pytest.mark.parametrize(
    ("channels", "props", "expected"),
    [
        (12, _card(6), "returns 12 channels, but its metadata names 6 classes"),
        (300, _card(6), "returns 300 channels, but its metadata names 6 classes"),
        (6, _card(6, std=[0.229, 0.0, 0.225]), "std must be positive"),
        (6, _card(6, mean=["NaN", 0.4, 0.4]), "mean must be 3 finite numbers"),
        (6, _card(6, mean=[0.4, 0.4]), "mean must be 3 finite numbers"),
        (6, _card(6, output_stride=0), "output_stride must be at least 1"),
        (6, _card(6, ignore_index=3), "ignore_index 3 must be in [6, 255]"),
        (6, _card(6, label_id_map=[1, 2]), "label_id_map must give one id in 0..255 per class"),
        (6, _card(6, static_size=[4, 4]), "static_size must be [height, width], each at least 16"),
        (6, _card(6, precision="int3"), "precision must be fp32, fp16 or int8"),
    ],
)
def test_lying_onnx_files_are_refused_in_one_line(
    tmp_path: Path, photos: Path, channels: int, props: dict, expected: str
) -> None:
    model = _graph(tmp_path / "lie.onnx", channels, props)
    result = _predict(model, photos, tmp_path / "out")
    assert result.exit_code == 2 and expected in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_logits_with_another_channel_count_at_run_time_are_refused(tmp_path: Path) -> None:
    """A graph whose channel count only shows when it runs: the backend checks every output it gets."""
    import torch

    from refine_cli.engine.infer.loop import OnnxBackend
    from refine_cli.engine.infer.onnx_backend import OnnxModelCard
    from refine_cli.errors import RefineError

    class Session:
        def get_providers(self) -> list[str]:
            return ["CPUExecutionProvider"]

        def get_inputs(self) -> list:
            return [type("Input", (), {"name": "images"})()]

        def run(self, _: object, feeds: dict) -> list[np.ndarray]:
            batch, _, height, width = feeds["images"].shape
            return [np.zeros((batch, 12, height // 4, width // 4), np.float32)]

    card = OnnxModelCard.from_props(_card(6), tmp_path / "x.onnx")
    backend = OnnxBackend(Session(), card, tmp_path / "x.onnx")
    with pytest.raises(RefineError, match=r"returned logits of shape \(1, 12, 8, 12\), but its metadata names 6"):
        backend(torch.zeros(1, 3, 32, 48))
