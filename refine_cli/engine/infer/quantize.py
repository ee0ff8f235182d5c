"""int8 post-training quantisation of refine's ONNX files: calibration images and the quantiser.

The result is a QDQ ONNX file (QuantizeLinear/DequantizeLinear pairs around int8 weights and
activations): ONNX Runtime runs it with its int8 kernels, OpenVINO reads the same pairs and runs
int8 convolutions (VNNI / AMX). Two quantisers can make it:

- `onnxruntime` (default): onnxruntime.quantization.quantize_static, per-channel symmetric int8
  weights, uint8 activations with min/max ranges from the calibration images. Ships with the `onnx`
  extra and was the more accurate of the two on refine's trained models (docs/benchmarks.md).
- `nncf`: NNCF's post-training quantisation (the `openvino` extra plus `pip install nncf`): symmetric
  activations and fast bias correction, the quantiser OpenVINO's own tools use.

Calibration images come from a unified dataset, normalised exactly as the inference loop feeds the
model; an image over AUTO_TILE_PIXELS is centre-cropped to the AUTO_TILE window the loop would use,
so calibration memory is bounded by the tile, not by what an image claims.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refine_cli.errors import RefineError

QUANTIZERS = ("onnxruntime", "nncf")
DEFAULT_QUANTIZER = "onnxruntime"
DEFAULT_CALIB_IMAGES = 100
DEFAULT_MAX_DROP = 1.0  # mIoU points int8 may cost before `refine export --int8` refuses the file


@dataclass(frozen=True)
class CalibrationSet:
    """Which images calibrate: a re-iterable source of normalised (1,3,H,W) float32 arrays."""

    name: str
    ids: list[str]
    load: Callable[[str], np.ndarray]

    def __iter__(self) -> Iterator[np.ndarray]:
        for sample_id in self.ids:
            yield self.load(sample_id)

    def __len__(self) -> int:
        return len(self.ids)


def normalised_batch(
    image: np.ndarray, mean: Sequence[float], std: Sequence[float], work_side: int | None = None
) -> np.ndarray:
    """HxWx3 uint8 RGB -> (1,3,h,w) float32 as the inference loop feeds it: normalised, brought down to the
    model's working short side (`work_side`, a model trained on large photos) by the loop's own view resize,
    and centre-cropped to AUTO_TILE (before the float copy when nothing is resized, so a huge image never
    becomes float whole)."""
    import torch

    from refine_cli.engine.infer.tta import resize_images, short_side_factor, view_size, work_short_side

    height, width = image.shape[:2]
    factor = short_side_factor(height, width, work_short_side(work_side))
    batch = image.transpose(2, 0, 1)[None]  # a uint8 view
    if factor == 1.0:
        batch = _centre_tile(batch)
    channel_mean, channel_std = (np.asarray(values, np.float32)[:, None, None] for values in (mean, std))
    batch = (batch.astype(np.float32) / 255.0 - channel_mean) / channel_std
    if factor != 1.0:
        batch = _centre_tile(resize_images(torch.from_numpy(batch), view_size(height, width, factor)).numpy())
    return np.ascontiguousarray(batch)


def _centre_tile(batch: np.ndarray) -> np.ndarray:
    """The centre AUTO_TILE window of a (1,3,h,w) batch over AUTO_TILE_PIXELS (the loop tiles such views)."""
    from refine_cli.engine.infer.loop import AUTO_TILE, AUTO_TILE_PIXELS

    height, width = batch.shape[-2:]
    if height * width <= AUTO_TILE_PIXELS:
        return batch
    crop_h, crop_w = min(height, AUTO_TILE[0]), min(width, AUTO_TILE[1])
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return batch[..., top : top + crop_h, left : left + crop_w]


def split_for_calibration(ids: Sequence[str], count: int, hold_out: bool, seed: int = 0) -> tuple[list, list]:
    """(calibration ids, held-out ids): `count` of a seeded shuffle; with `hold_out` the last 20% never calibrate."""
    shuffled = list(ids)
    random.Random(seed).shuffle(shuffled)
    held = shuffled[len(shuffled) - max(1, len(shuffled) // 5) :] if hold_out and len(shuffled) > 1 else []
    pool = shuffled[: len(shuffled) - len(held)]
    return pool[:count], held


def random_calibration(height: int, width: int, count: int = 8, seed: int = 0) -> CalibrationSet:
    """Random normalised images: enough for timing an int8 graph, meaningless for its accuracy."""
    generator = np.random.default_rng(seed)
    arrays = {str(i): generator.standard_normal((1, 3, height, width), dtype=np.float32) for i in range(count)}
    return CalibrationSet("random", list(arrays), arrays.__getitem__)


def quantize_file(source: Path, target: Path, calibration: CalibrationSet, quantizer: str = DEFAULT_QUANTIZER) -> str:
    """Quantise the fp32 ONNX file `source` into a QDQ file `target`; returns a one-line description."""
    if quantizer not in QUANTIZERS:
        raise RefineError(f"unknown quantizer {quantizer!r}", hint="use " + " or ".join(QUANTIZERS))
    if len(calibration) == 0:
        raise RefineError("no calibration images", hint="give --calib-images 1 or more, from a split with images")
    with contextlib.redirect_stdout(io.StringIO()), _quiet_logs("nncf", ""):
        if quantizer == "nncf":
            return _quantize_nncf(source, target, calibration)
        return _quantize_onnxruntime(source, target, calibration)


def _quantize_onnxruntime(source: Path, target: Path, calibration: CalibrationSet) -> str:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        """Images in [start, end): ORT folds each range into its min/max before asking for the next."""

        def __init__(self) -> None:
            self.pending: Iterator[str] = iter(())

        def __len__(self) -> int:
            return len(calibration)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.pending = iter(calibration.ids[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            sample_id = next(self.pending, None)
            return None if sample_id is None else {"images": calibration.load(sample_id)}

    quantize_static(
        str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
        # one image at a time: the calibrator otherwise keeps every activation of every image until the end
        extra_options={"CalibStridedMinMax": 1},
    )  # fmt: skip
    return "onnxruntime.quantization static QDQ: per-channel int8 weights, uint8 activations (min/max)"


def _quantize_nncf(source: Path, target: Path, calibration: CalibrationSet) -> str:
    try:
        import nncf
    except ImportError:
        raise RefineError("nncf is not installed", hint="pip install nncf, or use --quantizer onnxruntime") from None
    import onnx

    model = onnx.load(str(source))
    dataset = nncf.Dataset(calibration, lambda array: {"images": array})
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):  # its progress bars
        quantized = nncf.quantize(model, dataset, subset_size=len(calibration), fast_bias_correction=True)
    onnx.save(quantized, str(target))
    return f"NNCF {nncf.__version__} post-training QDQ: per-channel int8 weights, int8 activations, bias correction"


@contextlib.contextmanager
def _quiet_logs(*names: str) -> Iterator[None]:
    """The quantisers log advice and progress (root logger, nncf's own) to stderr: refine shows its own."""
    import logging

    loggers = [logging.getLogger(name or None) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def set_metadata(path: Path, props: dict[str, str]) -> None:
    """Replace the file's refine metadata_props (a quantiser may drop or copy them) with `props`."""
    import onnx

    model = onnx.load(str(path))
    kept = [entry for entry in model.metadata_props if not entry.key.startswith("refine.")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
