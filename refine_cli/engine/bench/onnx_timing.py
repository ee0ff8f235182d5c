"""`refine bench --runtime onnxruntime / openvino`: the same model and timed step, run from an ONNX graph.

The model is BN-folded and exported exactly as `refine export` does (dynamic height and width), into
a temporary folder that is removed again; `--precision int8` then quantises that file with random
calibration images (the graph and its int8 kernels are what a calibrated file runs, so the timing is
real; the accuracy of such a file is meaningless, and the row says so). `--checkpoint FILE.onnx` times
the file itself. Every runtime gets the same thread count PyTorch would use (`--threads`, else
torch's default), so the rows of the table compare runtimes, not settings.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from refine_cli.engine.infer.export import export_module
from refine_cli.engine.infer.model_prep import fold_batchnorm
from refine_cli.engine.infer.onnx_backend import OnnxModelCard, create_session
from refine_cli.errors import RefineError

RANDOM_CALIBRATION_NOTE = "int8 calibrated on random images: timing only, its accuracy means nothing"


class _SessionModel:
    """session.run on a host copy of the input, logits back as a tensor: a drop-in for `model(x)`."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input = session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {self.input: x.numpy()})
        return torch.from_numpy(logits)


class _OpenVinoModel:
    """One OpenVINO infer request on the input, logits back as a tensor: a drop-in for `model(x)`."""

    def __init__(self, compiled: Any) -> None:
        self.request = compiled.create_infer_request()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.request.infer({0: x.numpy()}, share_inputs=True)[0])


def _runner(path: Path, runtime: str, settings: Any, device: torch.device, threads: int) -> tuple[Any, dict]:
    """The file under `runtime` as a callable, and the facts the report records about it."""
    if runtime == "openvino":
        from refine_cli.engine.infer.openvino_backend import compile_network, read_network, require_openvino

        hint = "bf16" if settings.precision == "bf16" else "fp32"
        compiled = compile_network(read_network(path), hint, threads)
        version = require_openvino().__version__.split("-")[0]
        ran = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # what it runs, not what was asked
        info = {"device": "CPU", "threads": threads, "inference_precision": ran, "version": version}
        return _OpenVinoModel(compiled), info
    session = create_session(path, "cpu" if device.type == "cpu" else str(device), threads=threads)
    return _SessionModel(session), {"providers": list(session.get_providers()), "threads": threads}


def exported_step(
    model: nn.Module,
    settings: Any,
    device: torch.device,
    make_step: Callable[..., Callable[[], object]],
    runtime: str = "onnxruntime",
) -> tuple[Callable[[], object], int, dict[str, Any]]:
    """(timed step, folded BatchNorms, runtime facts) for `model` exported to ONNX and run by `runtime`.

    `make_step(model, x, settings, device)` is bench's own step builder, so the postprocessing
    (upsample to the input size, argmax) is literally the code the PyTorch rows time.
    """
    model.eval()
    folded = fold_batchnorm(model, verify=True)
    threads = settings.threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="refine-bench-") as folder:
        path = Path(folder) / "model.onnx"
        opset = export_module(model.cpu(), path)
        graph = "dynamic HxW export (as refine export), BN folded"
        if settings.precision == "int8":
            from refine_cli.engine.infer.quantize import DEFAULT_QUANTIZER, quantize_file, random_calibration

            quantized = Path(folder) / "int8.onnx"
            calibration = random_calibration(settings.height, settings.width, count=4)
            quantize_file(path, quantized, calibration, DEFAULT_QUANTIZER)
            path, graph = quantized, f"{graph}, {DEFAULT_QUANTIZER} int8 QDQ ({RANDOM_CALIBRATION_NOTE})"
        runner, info = _runner(path, runtime, settings, device, threads)
    x = torch.randn(settings.batch, 3, settings.height, settings.width)
    return make_step(runner, x, settings, torch.device("cpu")), folded, {**info, "opset": opset, "graph": graph}


def file_step(
    path: str | Path,
    settings: Any,
    device: torch.device,
    make_step: Callable[..., Callable[[], object]],
    runtime: str = "onnxruntime",
) -> tuple[Callable[[], object], int, dict[str, Any]]:
    """(timed step, folded BatchNorms, runtime facts) for a refine .onnx file as it is (e.g. a calibrated int8
    export); one line if it is none, or was exported for another size than --size."""
    from refine_cli.engine.infer.onnx_backend import graph_card, graph_opset, load_graph

    loaded = load_graph(Path(path))  # parsed once: its card and its opset
    card = graph_card(loaded, Path(path))
    if card.static_size and list(card.static_size) != [settings.height, settings.width]:
        height, width = card.static_size
        raise RefineError(
            f"{path} was exported for {height}x{width} inputs only, not --size {settings.height}x{settings.width}",
            hint=f"use --size {height}x{width}, or export without --static",
        )
    threads = settings.threads or torch.get_num_threads()
    runner, info = _runner(Path(path), runtime, settings, device, threads)
    x = torch.randn(settings.batch, 3, settings.height, settings.width)
    step = make_step(runner, x, settings, torch.device("cpu"))
    graph = f"the exported file {Path(path).name} ({card.precision}, BN folded at export)"
    return step, batchnorm_count(card), {**info, "opset": graph_opset(loaded), "graph": graph}


def batchnorm_count(card: OnnxModelCard) -> int:
    """The BatchNorms of the file's architecture: `refine export` folds every one."""
    from refine_cli.models import create_model

    with torch.device("meta"):
        model = create_model(card.model, num_classes=card.num_classes)
    return sum(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())
