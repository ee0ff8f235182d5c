"""`refine export`: a checkpoint as a self-contained ONNX file, checked against PyTorch before it is kept.

The graph comes from torch.onnx's dynamo exporter (`torch.export` with symbolic height and width):
the TorchScript exporter traces Python integers as constants and cannot export the 2-scale model,
while torch.export keeps every size symbolic, so one file accepts any input size, odd ones included.
BatchNorm is folded first (the same verified fold `predict` uses). The file is written under a
temporary name, run with ONNX Runtime on a few input sizes, and renamed only if its logits match the
PyTorch model's within the tolerance: a file under the final name is always a verified one.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from refine_cli.data.load.normalize import input_normalization
from refine_cli.engine.infer.model_prep import fold_batchnorm
from refine_cli.engine.infer.onnx_backend import OnnxModelCard, graph_opset, open_session, require_onnx
from refine_cli.errors import RefineError
from refine_cli.fileio import atomic_path

DEFAULT_CHECK_SIZES: tuple[tuple[int, int], ...] = ((64, 64), (97, 131))
DEFAULT_TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2}


class _HalfPrecision(nn.Module):
    """fp16 weights and activations inside, fp32 images in and logits out (the file's interface stays fp32)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


def export_module(
    model: nn.Module,
    path: Path,
    *,
    opset: int | None = None,
    static: tuple[int, int] | None = None,
    metadata: dict[str, str] | None = None,
) -> int:
    """Export an eval-mode model to `path` (images -> logits); returns the opset written.

    Batch, height and width are dynamic unless `static` (HxW) fixes height and width. The exporter's
    progress chatter is swallowed so `--json -` keeps stdout clean; its failures become RefineError.
    """
    require_onnx("onnx", "onnxscript")
    import onnx

    height, width = static or (64, 64)
    example = torch.randn(2, 3, height, width)  # batch 2: an example batch of 1 would pin the batch size
    dynamic = torch.export.Dim.DYNAMIC
    axes = {0: dynamic} if static else {0: dynamic, 2: dynamic, 3: dynamic}
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes=(axes,),
                opset_version=opset,
                verbose=False,
            )
    except Exception as error:  # noqa: BLE001 - the exporter fails in many private exception types
        first = " ".join(str(error).split())[:200]
        raise RefineError(
            f"torch.onnx could not export {getattr(model, 'model_name', type(model).__name__)} ({first})",
            hint="try another --opset, or --static HxW",
        ) from None
    proto = program.model_proto
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return graph_opset(proto) or 0


def max_abs_difference(
    reference: nn.Module, session: Any, sizes: Sequence[tuple[int, int]], seed: int = 0
) -> dict[str, float]:
    """Max |ONNX Runtime - PyTorch| of the logits per input size ('HxW' -> difference)."""
    generator = torch.Generator().manual_seed(seed)
    input_name = session.get_inputs()[0].name
    result = {}
    for height, width in sizes:
        x = torch.randn(1, 3, height, width, generator=generator)
        with torch.inference_mode():
            expected = reference(x).float().numpy()
        (actual,) = session.run(None, {input_name: x.numpy()})
        if actual.shape != expected.shape:
            raise RefineError(
                f"the ONNX model returned {actual.shape} for a {height}x{width} input, PyTorch {expected.shape}"
            )
        result[f"{height}x{width}"] = float(np.abs(actual - expected).max())
    return result


@dataclass(frozen=True)
class ExportReport:
    """What `refine export` wrote and how closely the file matches PyTorch (the `--json` report)."""

    checkpoint: str
    out: str
    format: str
    model: str
    num_classes: int
    opset: int
    exporter: str
    dynamic: str
    static_size: list[int] | None
    precision: str
    bn_folded: int
    bytes: int
    export_seconds: float
    max_abs_diff: dict[str, float]
    tolerance: float
    metadata: dict[str, str]
    quantization: dict[str, Any] | None = None  # `--int8`: calibration, both mIoUs, the drop, changed pixels

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _model_card(
    loaded: Any, model: nn.Module, source_name: str, static: tuple[int, int] | None, precision: str
) -> OnnxModelCard:
    """The metadata that makes the exported file self-sufficient: classes, palette, normalisation, provenance.

    The normalisation is the model's own (a converted MatConvNet model: RGB 0-255 minus 128), so the
    file is fed exactly what the checkpoint was.
    """
    mean, std = input_normalization(model)
    return OnnxModelCard(
        model=loaded.model,
        num_classes=loaded.num_classes,
        classes=list(loaded.classes),
        palette=[list(map(int, rgb)) for rgb in loaded.palette],
        mean=list(mean),
        std=list(std),
        output_stride=4,
        ignore_index=loaded.ignore_index,
        label_id_map=loaded.label_id_map,
        static_size=list(static) if static else None,
        precision=precision,
        source={"checkpoint": source_name, "refine_version": loaded.refine_version, "created": loaded.created},
        work_side=loaded.work_side,
    )


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    opset: int | None = None,
    static: tuple[int, int] | None = None,
    fp16: bool = False,
    tolerance: float | None = None,
    check_sizes: Sequence[tuple[int, int]] = DEFAULT_CHECK_SIZES,
) -> ExportReport:
    """Export `checkpoint` to `out` (ONNX), verify it with ONNX Runtime, and say what was written."""
    from refine_cli.models.checkpoint import load_checkpoint

    require_onnx("onnx", "onnxruntime", "onnxscript")
    out = Path(out)
    if out.is_dir():
        raise RefineError(f"--out {out} is a folder", hint="give a file name, e.g. --out model.onnx")
    precision = "fp16" if fp16 else "fp32"
    tolerance = DEFAULT_TOLERANCE[precision] if tolerance is None else tolerance
    loaded = load_checkpoint(checkpoint)
    reference = loaded.build_model("cpu").eval()
    model = loaded.build_model("cpu").eval()
    folded = fold_batchnorm(model, verify=True)
    exported: nn.Module = _HalfPrecision(model) if fp16 else model
    card = _model_card(loaded, reference, Path(checkpoint).name, static, precision)
    sizes = [tuple(static)] if static else [tuple(size) for size in check_sizes]
    start = time.perf_counter()
    with atomic_path(out) as tmp:
        written_opset = export_module(exported, tmp, opset=opset, static=static, metadata=card.to_props())
        export_seconds = time.perf_counter() - start
        _, session = open_session(tmp, "cpu")
        differences = max_abs_difference(reference, session, sizes)
        worst = max(differences.values())
        if not worst <= tolerance:
            raise RefineError(
                f"the exported model differs from PyTorch by {worst:.3g} (max abs logit, tolerance {tolerance:g}); "
                f"nothing was written to {out}",
                hint="raise --tolerance if this is expected (e.g. fp16), or report the model and --opset",
            )
    return ExportReport(
        checkpoint=str(checkpoint),
        out=str(out),
        format="onnx",
        model=loaded.model,
        num_classes=loaded.num_classes,
        opset=written_opset,
        exporter=f"torch.onnx dynamo (torch {torch.__version__})",
        dynamic="batch" if static else "batch, height, width",
        static_size=list(static) if static else None,
        precision=precision,
        bn_folded=folded,
        bytes=out.stat().st_size,
        export_seconds=round(export_seconds, 2),
        max_abs_diff={key: float(f"{value:.3g}") for key, value in differences.items()},
        tolerance=tolerance,
        metadata=dict(card.to_props()),
    )
