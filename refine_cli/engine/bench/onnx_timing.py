"""`refine bench --runtime onnxruntime`: the same model and timed step, run by ONNX Runtime.

The model is BN-folded and exported exactly as `refine export` does (dynamic height and width), into
a temporary folder that is removed again; the session gets the same thread count PyTorch would use
(`--threads`, else torch's default), so the two rows of the table compare runtimes, not settings.
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
from refine_cli.engine.infer.onnx_backend import create_session


class _SessionModel:
    """session.run on a host copy of the input, logits back as a tensor: a drop-in for `model(x)`."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input = session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {self.input: x.numpy()})
        return torch.from_numpy(logits)


def onnxruntime_step(
    model: nn.Module, settings: Any, device: torch.device, make_step: Callable[..., Callable[[], object]]
) -> tuple[Callable[[], object], int, dict[str, Any]]:
    """(timed step, folded BatchNorms, session facts) for `model` under ONNX Runtime.

    `make_step(model, x, settings, device)` is bench's own step builder, so the postprocessing
    (upsample to the input size, argmax) is literally the code the PyTorch rows time.
    """
    model.eval()
    folded = fold_batchnorm(model, verify=True)
    threads = settings.threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="refine-bench-") as folder:
        path = Path(folder) / "model.onnx"
        opset = export_module(model.cpu(), path)
        session = create_session(path, "cpu" if device.type == "cpu" else str(device), threads=threads)
    x = torch.randn(settings.batch, 3, settings.height, settings.width)
    step = make_step(_SessionModel(session), x, settings, torch.device("cpu"))
    info = {
        "providers": list(session.get_providers()),
        "threads": threads,
        "opset": opset,
        "graph": "dynamic HxW export (as refine export), BN folded",
    }
    return step, folded, info
