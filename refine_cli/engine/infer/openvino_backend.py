"""refine's .onnx files run by OpenVINO: reading the graph and its metadata, compiling it for the CPU.

OpenVINO reads an ONNX file directly; its ONNX frontend keeps `metadata_props` in the model's
`rt_info["framework"]`, so the same `OnnxModelCard` (and its validation) describes the file here as
under ONNX Runtime. The CPU plugin's default inference precision is bf16 on CPUs that have bf16
instructions: refine always sets it explicitly (f32 unless `--precision bf16`), so fp32 means fp32.

The compiled form is cached (OpenVINO's CACHE_DIR, keyed by a hash of the graph, the weights, the
settings and the OpenVINO version, so an edited file or other settings never reuse a stale blob; a
damaged blob is recompiled by OpenVINO itself). The cache is `$REFINE_OPENVINO_CACHE`, else
`$XDG_CACHE_HOME/refine/openvino` (`~/.cache/...`); `REFINE_OPENVINO_CACHE=0` turns it off; only the
newest `CACHE_KEEP` blobs are kept. openvino is the optional `openvino` extra.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from refine_cli.engine.infer.onnx_backend import OnnxModelCard, check_logits, check_view_size
from refine_cli.errors import RefineError, native_stderr_silenced

INSTALL_HINT = "pip install 'refine-cli[openvino]'"
CACHE_ENV = "REFINE_OPENVINO_CACHE"
CACHE_KEEP = 16
# refine's precision names -> OpenVINO's INFERENCE_PRECISION_HINT (what runs outside int8 layers)
HINTS = {"fp32": "f32", "bf16": "bf16"}


def require_openvino() -> Any:
    """The openvino module, or one line saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise RefineError("openvino is not installed", hint=INSTALL_HINT) from None
    return openvino


def core() -> Any:
    """One openvino.Core per process (creating one loads the plugins)."""
    if not hasattr(core, "instance"):
        core.instance = require_openvino().Core()  # type: ignore[attr-defined]
    return core.instance  # type: ignore[attr-defined]


def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin can run bf16 here (AVX512-BF16 or AMX)."""
    return "BF16" in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def read_network(path: str | os.PathLike[str]) -> Any:
    """openvino.Model of an ONNX file; one line if it is missing, cut off or not ONNX."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise RefineError(f"ONNX model {path} {what}", hint="check the path")
    try:
        with native_stderr_silenced():  # its frontends (protobuf's text parser...) print as they try the file
            return core().read_model(str(path))
    except Exception as error:  # noqa: BLE001 - OpenVINO raises a generic RuntimeError with a long report
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if not line.startswith(("Check ", "Exception from"))), "")
        reason = reason[:157] + "..." if len(reason) > 160 else reason
        raise RefineError(
            f"{path} is not a readable ONNX model (OpenVINO: {reason or 'unreadable'})",
            hint="the file is damaged (e.g. cut off during a copy) or not ONNX; export it again",
        ) from None


def model_card(network: Any, path: Path) -> OnnxModelCard:
    """The file's refine metadata (as OpenVINO's ONNX frontend keeps it), validated like ONNX Runtime's."""
    props: dict[str, str] = {}
    if network.has_rt_info(["framework"]):
        for key in network.get_rt_info()["framework"]:
            props[key] = network.get_rt_info(["framework", key]).astype(str)
    card = OnnxModelCard.from_props(props, path)
    shape = network.outputs[0].get_partial_shape() if len(network.outputs) == 1 else None
    channels = shape[1] if shape is not None and shape.rank.is_static and shape.rank.get_length() == 4 else None
    if channels is None or (channels.is_static and channels.get_length() != card.num_classes):
        found = "an output that is not NCHW logits" if channels is None else f"{channels.get_length()} channels"
        raise RefineError(
            f"{path} returns {found}, but its metadata names {card.num_classes} classes",
            hint="export it again with `refine export CK --format onnx`",
        )
    return card


def cache_dir() -> Path | None:
    """Where compiled models are cached (None: caching off)."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in ("0", "off", "no", "false"):
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "refine" / "openvino"


def _usable_cache() -> Path | None:
    """The cache folder if it exists or can be made and is writable; caching is an optimisation, never an error."""
    folder = cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK | os.X_OK) else None


def _prune_cache(folder: Path) -> None:
    """Keep the newest CACHE_KEEP blobs: each file and setting adds one about the size of its weights."""
    with contextlib.suppress(OSError):
        blobs = sorted(folder.glob("*.blob"), key=lambda blob: blob.stat().st_mtime, reverse=True)
        for blob in blobs[CACHE_KEEP:]:
            blob.unlink()


def compile_network(network: Any, precision: str, threads: int | None) -> Any:
    """The network compiled for the CPU: latency mode, one stream, `threads` threads, `precision` outside int8."""
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": HINTS[precision],
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    folder = _usable_cache()
    if folder is not None:
        from filelock import FileLock, Timeout

        try:  # one compiler per cache at a time: the second process then reads the first one's blob
            with FileLock(folder / ".compile.lock", timeout=120):
                compiled = core().compile_model(network, "CPU", {**config, "CACHE_DIR": str(folder)})
            _prune_cache(folder)
            return compiled
        except (Timeout, OSError):
            pass
        except RuntimeError:  # e.g. a full disk while writing the blob: compile without the cache
            pass
    try:
        return core().compile_model(network, "CPU", config)
    except RuntimeError as error:
        first = " ".join(str(error).split())[:200]
        raise RefineError(
            f"OpenVINO could not compile the model ({first})", hint="try --runtime onnxruntime, or update openvino"
        ) from None


def resolve_precision(card: OnnxModelCard, precision: str | None, path: Path) -> str:
    """The precision OpenVINO runs outside int8 layers: fp32 unless bf16 is asked for (and the CPU has it)."""
    if precision is None or precision == "fp32":
        return "fp32"
    if precision != "bf16":
        raise RefineError(
            f"--precision {precision} is not an OpenVINO CPU precision",
            hint="use --precision fp32 or bf16 with --runtime openvino",
        )
    if not cpu_has_bf16():
        raise RefineError(
            "this CPU has no bf16 instructions (AVX512-BF16 or AMX): OpenVINO would run fp32 and call it bf16",
            hint="drop --precision bf16",
        )
    if card.precision == "fp16":
        raise RefineError(f"{path} holds fp16 weights; bf16 runs an fp32 export", hint="drop --precision bf16")
    return "bf16"


class OpenVinoBackend:
    """A refine ONNX file compiled by OpenVINO for the CPU; tensors cross as NumPy arrays on the host."""

    runtime = "openvino"

    def __init__(self, compiled: Any, card: OnnxModelCard, path: Path, precision: str, threads: int | None) -> None:
        self.compiled, self.card, self.path = compiled, card, path
        self.device = torch.device("cpu")
        self.num_classes = card.num_classes
        self.mean, self.std = tuple(card.mean), tuple(card.std)
        self.hint = precision
        self.precision = f"int8 ({precision} elsewhere)" if card.precision == "int8" else precision
        self.threads = threads
        self.request = compiled.create_infer_request()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        check_view_size(self.card, self.path, list(images.shape[-2:]))
        array = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        logits = self.request.infer({0: array}, share_inputs=True)[0]  # outputs are copies (share_outputs off)
        check_logits(self.card, self.path, logits.shape)
        return torch.from_numpy(logits)


def open_openvino(
    path: str | os.PathLike[str], device: str = "cpu", threads: int | None = None, precision: str | None = None
) -> tuple[OnnxModelCard, OpenVinoBackend]:
    """(card, backend) for a refine ONNX file under OpenVINO; one clear line for anything it cannot run."""
    if device not in ("auto", "cpu"):
        raise RefineError(f"--runtime openvino runs on the CPU, not --device {device}", hint="use --device cpu")
    path = Path(path)
    network = read_network(path)
    card = model_card(network, path)
    hint = resolve_precision(card, precision, path)
    return card, OpenVinoBackend(compile_network(network, hint, threads), card, path, hint, threads)
