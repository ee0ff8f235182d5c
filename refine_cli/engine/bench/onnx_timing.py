"""`refine bench --runtime onnxruntime`: the same model and timed step, run by ONNX Runtime.

The model is BN-folded and exported exactly as `refine export` does (dynamic height and width), into
a temporary folder that is removed again; the session gets the same thread count PyTorch would use
(`--threads`, else torch's default), so the two rows of the table compare runtimes, not settings.
`refine bench --checkpoint FILE.onnx` times an exported file the same way (`onnx_file_step`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from refine_cli.engine.infer.export import export_module
from refine_cli.engine.infer.model_prep import fold_batchnorm
from refine_cli.engine.infer.onnx_backend import OnnxModelCard, create_session, open_session
from refine_cli.errors import RefineError


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


@dataclass
class OnnxFile:
    """An exported file opened for timing: what it says about itself, its session and the facts for the report."""

    path: Path
    card: OnnxModelCard
    session: Any
    info: dict[str, Any]
    bn_folded: int  # the BatchNorms of its architecture: `refine export` folds every one

    def step(self, settings: Any, make_step: Callable[..., Callable[[], object]]) -> Callable[[], object]:
        """session.run plus bench's own upsample + argmax (literally the step the PyTorch rows time)."""
        x = torch.randn(settings.batch, 3, settings.height, settings.width)
        return make_step(_SessionModel(self.session), x, settings, torch.device("cpu"))


def open_onnx_file(path: str | Path, settings: Any, device: torch.device) -> OnnxFile:
    """A `refine export` file ready to time at --size with --threads; one line if it is none or has another size."""
    import onnx

    threads = settings.threads or torch.get_num_threads()
    card, session = open_session(path, "cpu" if device.type == "cpu" else str(device), threads=threads)
    if card.static_size and list(card.static_size) != [settings.height, settings.width]:
        height, width = card.static_size
        raise RefineError(
            f"{path} was exported for {height}x{width} inputs only, not --size {settings.height}x{settings.width}",
            hint=f"use --size {height}x{width}, or export without --static",
        )
    graph = onnx.load(str(path), load_external_data=False)
    opset = next((entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx")), None)
    info = {
        "providers": list(session.get_providers()),
        "threads": threads,
        "opset": opset,
        "graph": f"the exported file {Path(path).name} ({card.precision}, BN folded at export)",
    }
    return OnnxFile(Path(path), card, session, info, _batchnorm_count(card))


def _batchnorm_count(card: OnnxModelCard) -> int:
    from refine_cli.models import create_model

    with torch.device("meta"):
        model = create_model(card.model, num_classes=card.num_classes)
    return sum(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())


def onnx_file_job(path: str, settings: Any, device: torch.device) -> dict[str, Any]:
    """`refine bench --checkpoint FILE.onnx`: the row's job, labelled `model (FILE.onnx)`, timed by ONNX Runtime."""
    from refine_cli.models import create_model

    if settings.precision != "fp32":
        raise RefineError(
            f"--precision {settings.precision} is a PyTorch autocast mode; {path} runs at the precision it was "
            "exported with", hint="drop --precision (or time the .pt checkpoint)",
        )  # fmt: skip
    opened = open_onnx_file(path, settings, device)
    card = opened.card
    precision = f", {card.precision}" if card.precision != "fp32" else ""
    return {
        "name": card.model,
        "label": f"{card.model} ({Path(path).name}{precision})",
        "builder": None,
        "counter": lambda: create_model(card.model, num_classes=card.num_classes),
        "onnx_file": opened,
        "checkpoint": path,
        "num_classes": card.num_classes,
    }
