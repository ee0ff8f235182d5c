"""refine's ONNX files: the metadata that makes one self-sufficient, and opening one with ONNX Runtime.

An exported file carries, in its `metadata_props`, everything `predict` needs besides the graph: model
name, classes, palette, input normalisation, output stride, ignore index and the label-id map. A file
without them (or a damaged one) is refused with one line rather than producing unlabelled output.
onnx / onnxruntime are the optional `onnx` extra, imported only when an ONNX file is used.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refine_cli.class_tables import check_class_names, check_num_classes, check_palette, is_int
from refine_cli.errors import RefineError

FORMAT = "refine-onnx"
FORMAT_VERSION = 2  # 2: may carry work_side, which a reader must honour (1 never does)
_PREFIX = "refine."
INSTALL_HINT = "pip install 'refine-cli[onnx]'"


def require_onnx(*modules: str) -> None:
    """Import the ONNX extra's modules now, or fail with one line saying how to install them."""
    import importlib

    for name in modules or ("onnxruntime",):
        try:
            importlib.import_module(name)
        except ImportError:
            raise RefineError(f"{name} is not installed", hint=INSTALL_HINT) from None


_REEXPORT = "export it again with `refine export CK --format onnx`"


@dataclass
class OnnxModelCard:
    """What an exported file says about itself (the checkpoint's facts needed at inference time)."""

    model: str
    num_classes: int
    classes: list[str]
    palette: list[list[int]]
    mean: list[float]
    std: list[float]
    output_stride: int = 4
    ignore_index: int = 255
    label_id_map: list[int] | None = None
    static_size: list[int] | None = None
    precision: str = "fp32"
    source: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None  # int8 files: how they were calibrated and what they scored
    work_side: int | None = None  # the checkpoint's working short side for large images (None: their own size)

    def to_props(self) -> dict[str, str]:
        """metadata_props entries (string -> string; lists and dicts as JSON)."""
        values = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION if self.work_side is not None else 1,  # older readers: 1 only
            "model": self.model,
            "num_classes": self.num_classes,
            "classes": self.classes,
            "palette": self.palette,
            "mean": self.mean,
            "std": self.std,
            "output_stride": self.output_stride,
            "ignore_index": self.ignore_index,
            "label_id_map": self.label_id_map,
            "static_size": self.static_size,
            "precision": self.precision,
            "source": self.source,
            **({"quantization": self.quantization} if self.quantization is not None else {}),
            **({"work_side": self.work_side} if self.work_side is not None else {}),
        }
        return {_PREFIX + key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], path: Path) -> OnnxModelCard:
        """Parse metadata_props; RefineError naming the file when refine's entries are missing or wrong."""
        if props.get(_PREFIX + "format") != FORMAT:
            raise RefineError(
                f"{path} is an ONNX file without refine metadata",
                hint="export it with `refine export CK --format onnx` (the file must carry classes and palette)",
            )
        try:
            values = {key[len(_PREFIX) :]: value for key, value in props.items() if key.startswith(_PREFIX)}
            version = int(values["format_version"])
            if version > FORMAT_VERSION:
                raise RefineError(f"{path} has refine ONNX format {version}; this refine reads up to {FORMAT_VERSION}")

            def load(key: str, default: Any = None) -> Any:
                return json.loads(values[key]) if key in values else default

            num_classes = check_num_classes(load("num_classes"), "num_classes", str(path), _REEXPORT)
            card = cls(
                model=values["model"],
                num_classes=num_classes,
                classes=check_class_names(load("classes"), num_classes, "classes", str(path), _REEXPORT),
                palette=check_palette(load("palette"), num_classes, "palette", str(path), _REEXPORT),
                mean=[float(v) for v in load("mean")],
                std=[float(v) for v in load("std")],
                output_stride=int(load("output_stride", 4)),
                ignore_index=int(load("ignore_index", 255)),
                label_id_map=load("label_id_map"),
                static_size=load("static_size"),
                precision=values.get("precision", "fp32"),
                source=load("source", {}) or {},
                quantization=load("quantization"),
                work_side=load("work_side"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise RefineError(
                f"{path} has damaged refine metadata ({type(error).__name__}: {error})", hint=_REEXPORT
            ) from None
        card.check(path)
        return card

    def check(self, path: Path) -> None:
        """Every value inference relies on is in range: a NaN mean or a zero std would silently give garbage."""
        problems = []
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                problems.append(f"{name} must be 3 finite numbers, not {values}")
        if all(math.isfinite(v) for v in self.std) and not all(v > 0 for v in self.std):
            problems.append(f"std must be positive, not {self.std}")
        if self.output_stride < 1:
            problems.append(f"output_stride must be at least 1, not {self.output_stride}")
        if not self.num_classes <= self.ignore_index <= 255:
            problems.append(f"ignore_index {self.ignore_index} must be in [{self.num_classes}, 255]")
        if self.label_id_map is not None and (
            not isinstance(self.label_id_map, list)
            or len(self.label_id_map) != self.num_classes
            or not all(is_int(v) and 0 <= v <= 255 for v in self.label_id_map)
        ):
            problems.append("label_id_map must give one id in 0..255 per class")
        if self.static_size is not None and (
            not isinstance(self.static_size, list)
            or len(self.static_size) != 2
            or not all(is_int(v) and v >= 16 for v in self.static_size)
        ):
            problems.append(f"static_size must be [height, width], each at least 16, not {self.static_size}")
        if self.precision not in ("fp32", "fp16", "int8"):
            problems.append(f"precision must be fp32, fp16 or int8, not {self.precision!r}")
        if self.quantization is not None and not isinstance(self.quantization, dict):
            problems.append("quantization must be a JSON object")
        if self.work_side is not None and (not is_int(self.work_side) or self.work_side < 32):
            problems.append(f"work_side must be an integer of at least 32, not {self.work_side!r}")
        if problems:
            raise RefineError(f"{path} has damaged refine metadata: {'; '.join(problems)}", hint=_REEXPORT)


def check_view_size(card: OnnxModelCard, path: Path, size: list[int]) -> None:
    """A file exported with --static runs only at that size: one line saying which --tile would work."""
    if card.static_size and size != list(card.static_size):
        height, width = card.static_size
        tileable = size[0] >= height and size[1] >= width  # --tile never pads a view up to the tile size
        raise RefineError(
            f"{path} was exported for {height}x{width} inputs only; this view is {size[0]}x{size[1]}",
            hint=f"use --tile {height}x{width} without --msc, or export without --static"
            if tileable
            else f"a view smaller than {height}x{width} cannot be tiled: export without --static (or drop --msc)",
        )


def check_logits(card: OnnxModelCard, path: Path, shape: tuple[int, ...]) -> None:
    """The graph returned NCHW logits with the class count its metadata names (a lying file is refused)."""
    if len(shape) != 4 or shape[1] != card.num_classes:
        raise RefineError(
            f"{path} returned logits of shape {tuple(shape)}, but its metadata names {card.num_classes} classes",
            hint=_REEXPORT,
        )


def providers_for(device: str) -> list[str]:
    """ONNX Runtime providers: CUDA first when available and not --device cpu, CPU always as fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = [] if device == "cpu" else ["CUDAExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" not in available:
        raise RefineError(
            f"--device {device} with an ONNX model needs onnxruntime-gpu (CUDAExecutionProvider)",
            hint="install onnxruntime-gpu, or use --device cpu",
        )
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


def create_session(path: str | os.PathLike[str], device: str = "cpu", threads: int | None = None):  # noqa: ANN201
    """An onnxruntime.InferenceSession for any ONNX file (`threads` intra-op threads); one line if unreadable."""
    require_onnx("onnxruntime")
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise RefineError(f"ONNX model {path} {what}", hint="check the path")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the failure is reported as one line below
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    # ORT's workers spin after each run by default; PyTorch's threads then fight them for the same cores
    # in the upsampling/argmax/TTA that follow
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers_for(device))
    except Exception as error:  # noqa: BLE001 - ORT raises several private exception types for bad files
        reason = " ".join(str(error).split())
        reason = reason if len(reason) <= 160 else reason[:157] + "..."
        raise RefineError(
            f"{path} is not a readable ONNX model ({reason})",
            hint="the file is damaged (e.g. cut off during a copy) or not ONNX; export it again",
        ) from None
    return session


def open_session(path: str | os.PathLike[str], device: str = "cpu", threads: int | None = None):  # noqa: ANN201
    """(OnnxModelCard, onnxruntime.InferenceSession) for a refine ONNX file; one clear line if it is not one."""
    session = create_session(path, device, threads)
    card = OnnxModelCard.from_props(dict(session.get_modelmeta().custom_metadata_map), Path(path))
    shape = session.get_outputs()[0].shape
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != card.num_classes):
        raise RefineError(
            f"{path} returns {shape[1] if len(shape) == 4 else shape} channels, but its metadata names "
            f"{card.num_classes} classes",
            hint=_REEXPORT,
        )
    return card, session


def read_card(path: Path) -> OnnxModelCard:
    """The refine metadata of an ONNX file without starting a runtime (the `onnx` package reads it)."""
    return graph_card(load_graph(path), path)


def graph_card(graph: Any, path: Path) -> OnnxModelCard:
    """The refine metadata of a loaded ONNX graph (`load_graph`), validated."""
    return OnnxModelCard.from_props({entry.key: entry.value for entry in graph.metadata_props}, path)


def graph_opset(graph: Any) -> int | None:
    """The default-domain opset a loaded ONNX graph (ModelProto) was written for."""
    return next((entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx")), None)


def load_graph(path: Path) -> Any:
    """The ONNX graph of `path` (its external data not loaded); one line if it is missing or not ONNX."""
    require_onnx("onnx")
    import onnx

    if not path.is_file():
        raise RefineError(f"ONNX model {path} {'is a directory' if path.is_dir() else 'does not exist'}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - protobuf's DecodeError and onnx's own errors
        raise RefineError(
            f"{path} is not a readable ONNX model ({' '.join(str(error).split())[:160]})",
            hint="the file is damaged (e.g. cut off during a copy) or not ONNX; export it again",
        ) from None
    return model
