"""One inference loop for `eval` and `predict`: decoded images -> same-size batches -> TTA -> CRF -> labels.

The model is a *backend*: any callable from normalised images (N,3,H,W) to logits, so the TTA code
(multi-scale, flip, sliding window) and the CRF run unchanged whether the logits come from PyTorch or
from ONNX Runtime. Which backend is used follows from the file: a `.onnx` export runs on ONNX Runtime
(CUDA provider when present) or, with `runtime="openvino"`, on OpenVINO (`openvino_backend.py`);
anything else is a refine checkpoint run by PyTorch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from refine_cli.data.load.normalize import input_normalization, normalize_image
from refine_cli.engine.infer.crf import CRFParams, CRFPool
from refine_cli.engine.infer.model_prep import (
    check_precision,
    check_precision_name,
    compile_for_inference,
    precision_context,
)
from refine_cli.engine.infer.tta import predict_batch_probs, short_side_factor
from refine_cli.errors import RefineError


class Backend(Protocol):
    """images (N,3,H,W) float32 on `device` -> logits (N,C,h,w); plus what the inference loop needs to feed it."""

    runtime: str
    device: torch.device
    precision: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int | None

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class TorchBackend:
    """A PyTorch model in eval mode (BN folded and channels_last on the CPU by `load_model`), optionally compiled.

    `precision` (fp32, tf32, bf16, fp16; see `engine.inference.PRECISIONS`) wraps each forward in
    autocast / the TF32 switches; the logits always leave as float32, so TTA averaging, softmax and
    the CRF run in full precision whatever the forward used.
    """

    runtime = "torch"

    def __init__(self, model: nn.Module, compile_model: bool = False, precision: str = "fp32") -> None:
        self.model = model.eval()
        parameter = next(model.parameters(), None)
        self.device = parameter.device if parameter is not None else torch.device("cpu")
        check_precision(precision, self.device)
        self.precision = precision
        self.num_classes = getattr(model, "num_classes", None)
        self.mean, self.std = input_normalization(model)  # the checkpoint's own, else ImageNet's
        self._forward: Callable[[torch.Tensor], torch.Tensor] = compile_for_inference(model) if compile_model else model

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with precision_context(self.precision, self.device):
            logits = self._forward(images)
        return logits.float()


class OnnxBackend:
    """An exported refine ONNX file run by ONNX Runtime; tensors cross as NumPy arrays on the host."""

    runtime = "onnxruntime"

    def __init__(self, session: Any, card: Any, path: Path) -> None:
        self.session, self.card, self.path = session, card, path
        self.device = torch.device("cpu")
        self.num_classes = card.num_classes
        self.mean, self.std = tuple(card.mean), tuple(card.std)
        self.providers = list(session.get_providers())
        self.precision = card.precision
        self._input = session.get_inputs()[0].name

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        from refine_cli.engine.infer.onnx_backend import check_logits, check_view_size

        check_view_size(self.card, self.path, list(images.shape[-2:]))
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        logits = self.session.run(None, {self._input: array})[0]
        check_logits(self.card, self.path, logits.shape)
        return torch.from_numpy(logits)


def as_backend(model: nn.Module | Backend) -> Backend:
    """A backend as is; a bare nn.Module (library callers, tests) wrapped as a PyTorch backend."""
    return TorchBackend(model) if isinstance(model, nn.Module) else model


@dataclass
class InferenceModel:
    """A loaded model for eval/predict: the backend plus the facts its file carries."""

    backend: Backend
    model: str
    num_classes: int
    classes: list[str]
    palette: list[list[int]]
    label_id_map: list[int] | None
    path: Path
    work_side: int | None = None  # large images are predicted at this short side, as the model was trained

    @property
    def runtime(self) -> str:
        return self.backend.runtime

    def describe_device(self) -> str:
        """'cpu' / 'cuda:0' for PyTorch; 'onnxruntime (CPUExecutionProvider)' / 'openvino (CPU, 2 threads)'."""
        providers = getattr(self.backend, "providers", None)
        if self.runtime == "openvino":
            return f"openvino (CPU, {getattr(self.backend, 'threads', None) or 'all'} threads)"
        return f"onnxruntime ({providers[0]})" if providers else str(self.backend.device)


def is_onnx_file(path: str | os.PathLike[str]) -> bool:
    """ONNX exports are recognised by their suffix (refine checkpoints are .pt/.pth)."""
    return Path(path).suffix.lower() == ".onnx"


RUNTIMES = ("torch", "onnxruntime", "openvino")


def resolve_runtime(path: Path, runtime: str | None) -> str:
    """The runtime for `path`: its own for auto (.onnx: ONNX Runtime, else PyTorch), else the one asked for,
    refused in one line when it cannot read that kind of file."""
    onnx = is_onnx_file(path)
    if runtime is None or runtime == "auto":
        return "onnxruntime" if onnx else "torch"
    if runtime not in RUNTIMES:
        raise RefineError(f"unknown runtime {runtime!r}", hint="use auto, " + ", ".join(RUNTIMES))
    if runtime == "torch" and onnx:
        raise RefineError(
            f"{path} is an ONNX file; PyTorch runs refine checkpoints (.pt)",
            hint="use --runtime onnxruntime or --runtime openvino, or give the .pt checkpoint",
        )
    if runtime != "torch" and not onnx:
        raise RefineError(
            f"--runtime {runtime} runs refine's ONNX files, and {path} is not one (.onnx)",
            hint=f"export it first: refine export {path} --out model.onnx (then --checkpoint model.onnx)",
        )
    return runtime


def load_model(
    path: str | os.PathLike[str],
    device: str = "auto",
    compile_model: bool = False,
    precision: str | None = None,
    runtime: str | None = None,
) -> InferenceModel:
    """Open a checkpoint (.pt: PyTorch, BN folded, channels_last on the CPU) or an export (.onnx: ONNX Runtime,
    or OpenVINO with `runtime="openvino"`).

    `precision` None means the file's own: fp32 for a checkpoint, what an .onnx was exported with.
    ONNX Runtime cannot change an .onnx file's precision at run time, so a different one is refused;
    OpenVINO runs an fp32 (or int8) file in bf16 outside its int8 layers when asked.
    """
    path = Path(path)
    if precision == "int8":
        raise RefineError(
            "int8 is a property of the model file, not a run-time --precision",
            hint="make one with `refine export CK --int8 --calib DATASET --out q.onnx`, then --checkpoint q.onnx",
        )
    if precision is not None:
        check_precision_name(precision)  # before the .onnx refusal, which would call it a mismatch
    runtime = resolve_runtime(path, runtime)
    if runtime == "torch":
        return _load_checkpoint(path, device, compile_model, precision)
    if compile_model:
        raise RefineError("--compile is for PyTorch checkpoints, not ONNX files", hint="drop --compile")
    if runtime == "openvino":
        from refine_cli.engine.infer.openvino_backend import open_openvino

        card, backend = open_openvino(path, device, threads=torch.get_num_threads(), precision=precision)
    else:
        card, backend = _open_onnxruntime(path, device, precision)
    return InferenceModel(
        backend, card.model, card.num_classes, card.classes, card.palette, card.label_id_map, path, card.work_side
    )


def _open_onnxruntime(path: Path, device: str, precision: str | None) -> tuple[Any, Backend]:
    from refine_cli.engine.infer.onnx_backend import open_session

    card, session = open_session(path, device, threads=torch.get_num_threads())
    if precision is not None and precision != card.precision:
        raise RefineError(
            f"{path} was exported in {card.precision}; ONNX Runtime runs a file at the precision it was exported "
            f"with, not --precision {precision}",
            hint="drop --precision, use --runtime openvino (fp32 / bf16), or run the .pt checkpoint",
        )
    return card, OnnxBackend(session, card, path)


def _load_checkpoint(path: Path, device: str, compile_model: bool, precision: str | None) -> InferenceModel:
    from refine_cli.devices import resolve_device
    from refine_cli.engine.infer.model_prep import preferred_memory_format, prepare_for_inference
    from refine_cli.models.checkpoint import load_checkpoint

    resolved = resolve_device(device)
    loaded = load_checkpoint(path)
    channels_last = preferred_memory_format(resolved) == torch.channels_last
    model, _ = prepare_for_inference(loaded.build_model("cpu"), resolved, fold_bn=True, channels_last=channels_last)
    backend = TorchBackend(model, compile_model, precision or "fp32")
    return InferenceModel(
        backend,
        loaded.model,
        loaded.num_classes,
        list(loaded.classes),
        loaded.palette,
        loaded.label_id_map,
        path,
        loaded.work_side,
    )


def prefetch(function: Callable[[Any], Any], items: Sequence[Any], depth: int = 4) -> Iterator[tuple[Any, Any]]:
    """Yield (item, function(item)) in order while two threads decode ahead (OpenCV/PIL release the GIL)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(function, item) for item in items[:depth]]
        for index, item in enumerate(items):
            if index + depth < len(items):
                futures.append(pool.submit(function, items[index + depth]))
            yield item, futures[index].result()
            futures[index] = None  # type: ignore[call-overload] - free the decoded arrays early


def same_size_batches(samples: Iterable[tuple[Any, np.ndarray]], batch_size: int) -> Iterator[list[tuple[Any, Any]]]:
    """Group consecutive (key, image) samples whose images have the same shape (so they stack)."""
    group: list[tuple[Any, np.ndarray]] = []
    for sample in samples:
        if group and (len(group) >= batch_size or group[0][1].shape != sample[1].shape):
            yield group
            group = []
        group.append(sample)
    if group:
        yield group


# A view larger than this many pixels goes through the model in AUTO_TILE windows (activations of a
# whole 81-Mpixel image need tens of GB; a 1024x1024 window a few hundred MB).
AUTO_TILE_PIXELS = 2048 * 2048
AUTO_TILE = (1024, 1024)


@dataclass
class Prediction:
    """One image's result: `label` (HxW, a device tensor without CRF, uint8 array with it), optional probs."""

    key: Any
    image: np.ndarray
    label: torch.Tensor | np.ndarray
    probs: np.ndarray | None = None

    def label_array(self) -> np.ndarray:
        """The label map as an HxW uint8 array on the host."""
        if isinstance(self.label, torch.Tensor):
            return self.label.to(torch.uint8).cpu().numpy()
        return self.label.astype(np.uint8, copy=False)


@dataclass(frozen=True)
class InferenceConfig:
    """How each image is predicted; one value shared by `run_inference`, `evaluate`, `predict_images` and video.

    `scales` and `flip` are the TTA views, `tile` the sliding window (None: whole images, auto-tiled when
    huge), `crf` the dense CRF run in `workers` processes, `batch_size` the same-size images per forward
    pass, `upsample` and `short_side` the test protocol's logit resize and short-side range (see
    `tta.predict_batch_probs`).
    """

    scales: Sequence[float] = (1.0,)
    flip: bool = False
    tile: tuple[int, int] | None = None
    crf: CRFParams | None = None
    batch_size: int = 1
    workers: int | None = None
    upsample: str = "bilinear"
    short_side: tuple[int, int] | None = None


def run_inference(
    model: nn.Module | Backend,
    samples: Iterable[tuple[Any, np.ndarray]],
    config: InferenceConfig = InferenceConfig(),  # noqa: B008 - frozen, so one shared default is safe
    *,
    want_probs: bool = False,
    notify: Callable[[str], None] | None = None,
) -> Iterator[Prediction]:
    """(key, HxWx3 uint8 RGB) samples -> Predictions in the same order, at each image's own resolution.

    Images of equal shape are batched; every view of the TTA goes through the backend; with a CRF it
    runs in worker processes while the next batch is inferred. `want_probs` also returns the
    (CRF-refined) class probabilities as float32 (C,H,W). Without a tile, an image over AUTO_TILE_PIXELS
    is predicted in AUTO_TILE windows all the same (`notify` is told once), so the memory a command
    needs grows with the tile, not with whatever size an image claims.
    """
    backend = as_backend(model)
    scales, tile, crf = config.scales, config.tile, config.crf
    labels_only = crf is None and not want_probs  # then one view needs no softmax (see predict_batch_probs)
    announced: list[bool] = []

    def tiles_for(height: int, width: int) -> tuple[int, int] | None:
        base = short_side_factor(height, width, config.short_side)  # the views are of the resized image
        if tile is not None or height * width * (base * max(scales)) ** 2 <= AUTO_TILE_PIXELS:
            return tile
        if notify is not None and not announced:
            announced.append(True)
            notify(
                f"images over {AUTO_TILE_PIXELS / 1e6:.1f} Mpixel (the first: {width}x{height}) are predicted in "
                f"{AUTO_TILE[0]}x{AUTO_TILE[1]} tiles to bound memory; --tile HxW chooses the tiles"
            )
        return AUTO_TILE

    def forward() -> Iterator[tuple[Any, np.ndarray, torch.Tensor]]:
        for group in same_size_batches(samples, max(1, config.batch_size)):
            images = torch.stack(
                [normalize_image(image, backend.device, backend.mean, backend.std) for _, image in group]
            )
            window = tiles_for(*images.shape[-2:])
            probs = predict_batch_probs(
                backend, images, scales=scales, flip=config.flip, tile=window, labels_only=labels_only,
                upsample=config.upsample, short_side=config.short_side,
            )  # fmt: skip
            for (key, image), sample_probs in zip(group, probs, strict=True):
                yield key, image, sample_probs

    if crf is None:
        for key, image, probs in forward():
            yield Prediction(key, image, probs.argmax(0), probs.float().cpu().numpy() if want_probs else None)
        return
    with CRFPool(crf, config.workers) as pool:
        stream = ((key, image, probs.float().cpu().numpy()) for key, image, probs in forward())
        results = pool.map_ordered(stream, lambda item: (item[1], item[2]), labels_only=not want_probs)
        for (key, image, _), refined in results:
            if refined.ndim == 3:
                yield Prediction(key, image, refined.argmax(0).astype(np.uint8), refined)
            else:
                yield Prediction(key, image, refined)
