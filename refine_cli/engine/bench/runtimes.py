"""Which runtimes `refine bench` runs, what each can honour, and the row of a `--checkpoint` file.

PyTorch times checkpoints and registry models under autocast precisions; ONNX Runtime and OpenVINO
time the exported graph (fp32, int8; OpenVINO bf16 too) or an .onnx file as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from refine_cli.devices import resolve_device
from refine_cli.errors import RefineError

RUNTIMES = ("torch", "onnxruntime", "openvino")
EXPORTED_RUNTIMES = ("onnxruntime", "openvino")  # they run the ONNX graph `refine export` writes


def checkpoint_job(checkpoint: str, runtimes: list[str], settings: Any, asked: bool = False) -> dict[str, Any]:
    """The --checkpoint row(s): a refine checkpoint like any model, or an .onnx file timed as it is.

    Labelled with the file name, so such a row never reads like the same model's --model row. `asked`: the
    runtimes came from --runtime; an .onnx file asked to run under PyTorch alone is refused, not timed by ONNX
    Runtime under a PyTorch label.
    """
    from refine_cli.models import create_model

    if Path(checkpoint).suffix.lower() == ".onnx":
        from refine_cli.engine.infer.onnx_backend import read_card

        if settings.precision == "int8":
            raise RefineError(
                f"--precision int8 quantises a model's graph with random calibration; {checkpoint} is timed as it is",
                hint="drop --precision (a calibrated int8 file is timed at its own precision)",
            )
        card = read_card(Path(checkpoint))
        exported = [runtime for runtime in runtimes if runtime in EXPORTED_RUNTIMES]
        if asked and not exported:
            raise RefineError(
                f"{checkpoint} is an exported ONNX graph; PyTorch cannot run it",
                hint="use --runtime onnxruntime or openvino; to time PyTorch, give the .pt checkpoint",
            )
        exported = exported or ["onnxruntime"]
        if "onnxruntime" in exported and settings.precision != "fp32":
            raise RefineError(
                f"--precision {settings.precision} is not an ONNX Runtime setting; {checkpoint} runs at the precision "
                "it was exported with", hint="drop --precision (or add --runtime openvino, which can run it in bf16)",
            )  # fmt: skip
        calibration = None
        if card.quantization:
            calib = card.quantization.get("calibration", {})
            calibration = f"{calib.get('images')} image(s) of {calib.get('dataset')}/{calib.get('split')}"
        precision = f", {card.precision}" if card.precision != "fp32" else ""
        return {
            "name": card.model, "label": f"{card.model} ({Path(checkpoint).name}{precision})", "builder": None,
            "checkpoint": checkpoint, "num_classes": card.num_classes,
            "counter": lambda: create_model(card.model, num_classes=card.num_classes), "runtimes": exported,
            "file_precision": card.precision, "calibration": calibration,
        }  # fmt: skip
    from refine_cli.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    return {
        "name": loaded.model,
        "label": f"{loaded.model} ({Path(checkpoint).name})",
        "builder": loaded.build_model,
        "counter": lambda: create_model(loaded.model, **loaded.model_kwargs),
        "checkpoint": checkpoint,
        "num_classes": loaded.num_classes,
    }


def default_runtimes(precision: str, device: str) -> list[str]:
    """`--runtime` not given: PyTorch, except for int8, which ONNX Runtime and (installed, on the CPU) OpenVINO run."""
    if precision != "int8":
        return ["torch"]
    import importlib.util

    on_cpu = resolve_device(device).type == "cpu"
    return ["onnxruntime"] + (["openvino"] if on_cpu and importlib.util.find_spec("openvino") else [])


def check_runtimes(runtimes: Sequence[str], settings: Any) -> list[str]:
    """Known runtimes, each once, each with settings it can honour."""
    chosen = list(dict.fromkeys(runtime.lower() for runtime in runtimes))
    chosen = chosen or default_runtimes(settings.precision, settings.device)
    for runtime in chosen:
        if runtime not in RUNTIMES:
            raise RefineError(f"unknown runtime {runtime!r}", hint="use --runtime torch, onnxruntime or openvino")
    if "torch" in chosen and settings.precision == "int8":
        raise RefineError(
            "--precision int8 runs a quantised ONNX graph, not PyTorch", hint="use --runtime onnxruntime/openvino"
        )
    if "onnxruntime" in chosen or "openvino" in chosen:
        from refine_cli.engine.infer.onnx_backend import require_onnx

        require_onnx("onnx", "onnxruntime", "onnxscript")
        if not settings.fold_bn:
            raise RefineError("ONNX runtimes time the exported (BN-folded) graph", hint="drop --no-fold-bn")
    if "onnxruntime" in chosen and settings.precision not in ("fp32", "int8"):
        raise RefineError(
            f"--precision {settings.precision} is a PyTorch autocast mode; --runtime onnxruntime times fp32 or int8",
            hint="use --precision fp32 or int8 (or --runtime openvino for bf16)",
        )
    if "openvino" in chosen:
        _check_openvino(settings)
    return chosen


def _check_openvino(settings: Any) -> None:
    from refine_cli.engine.infer.openvino_backend import cpu_has_bf16, require_openvino

    require_openvino()
    if resolve_device(settings.device).type != "cpu":
        raise RefineError("--runtime openvino runs on the CPU", hint="use --device cpu")
    if settings.precision not in ("fp32", "bf16", "int8"):
        raise RefineError(f"--precision {settings.precision} is not an OpenVINO CPU precision", hint="fp32, bf16, int8")
    if settings.precision == "bf16" and not cpu_has_bf16():
        raise RefineError("this CPU has no bf16 instructions for OpenVINO", hint="use --precision fp32 or int8")
