"""`refine export --int8`: quantise with the user's own images, and keep the file only if it scores.

int8 can wreck masks, so a quantised file is never written on trust: the checkpoint is exported
(fp32, verified against PyTorch as every export is), quantised with calibration images from the
user's dataset, and both files are scored by the one evaluator on images the calibration never saw
(the val split, or a held-out fifth of the calibration split). Above `max_drop` mIoU points the file
is refused unless forced. The numbers (both mIoUs, the drop, the share of pixels whose label changed)
go into the file's metadata (`refine.quantization`) and into the export report.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.engine.eval.evaluator import EvalReport, check_classes_match, evaluate
from refine_cli.engine.infer.export import ExportReport, export_checkpoint
from refine_cli.engine.infer.loop import InferenceConfig, load_model
from refine_cli.engine.infer.onnx_backend import OnnxModelCard
from refine_cli.engine.infer.quantize import (
    DEFAULT_CALIB_IMAGES,
    DEFAULT_MAX_DROP,
    DEFAULT_QUANTIZER,
    CalibrationSet,
    normalised_batch,
    quantize_file,
    set_metadata,
    split_for_calibration,
)
from refine_cli.engine.infer.tta import work_short_side
from refine_cli.errors import RefineError
from refine_cli.fileio import atomic_path

FEW_SCORED_IMAGES = 10  # below this the gate still runs, and says how little it can tell


@dataclasses.dataclass(frozen=True)
class Int8Settings:
    """How to calibrate, where to score, and how much accuracy the int8 file may cost."""

    dataset: UnifiedDataset
    calib_split: str = "train"
    calib_images: int = DEFAULT_CALIB_IMAGES
    eval_split: str = "val"
    eval_images: int | None = None
    max_drop: float = DEFAULT_MAX_DROP
    force: bool = False
    quantizer: str = DEFAULT_QUANTIZER
    runtime: str = "onnxruntime"


def _plan(settings: Int8Settings) -> tuple[list[str], str, list[str]]:
    """(calibration ids, name of the scored images, scored ids): never an image in both."""
    dataset = settings.dataset
    calib_ids = dataset.split_ids(settings.calib_split)
    separate = settings.eval_split != settings.calib_split and settings.eval_split in dataset.splits
    chosen, held = split_for_calibration(calib_ids, settings.calib_images, hold_out=not separate)
    if separate:
        scored, name = dataset.split_ids(settings.eval_split), settings.eval_split
    else:
        scored, name = held, f"{settings.calib_split} (held-out fifth, not calibrated on)"
    scored = scored[: settings.eval_images] if settings.eval_images else scored
    if not chosen or not scored:
        raise RefineError(
            f"split {settings.calib_split!r} of {dataset.path.name} has {len(calib_ids)} image(s): too few to "
            "calibrate on some and score on others",
            hint="give a dataset with a val split, or more images",
        )
    return chosen, name, scored


def _calibration(settings: Int8Settings, ids: list[str], card: OnnxModelCard, tick: Callable[[], None]) -> Any:
    def load(sample_id: str) -> np.ndarray:
        tick()
        return normalised_batch(settings.dataset.read_image(sample_id), card.mean, card.std, card.work_side)

    return CalibrationSet(f"{settings.dataset.meta.name}/{settings.calib_split}", ids, load)


def _score(path: Path, settings: Int8Settings, split: str, ids: list[str], progress: bool, on_sample: Any) -> Any:
    loaded = load_model(path, "cpu", runtime=settings.runtime)  # its classes: checked after the export
    config = InferenceConfig(short_side=work_short_side(loaded.work_side))  # as eval/predict run the file
    return evaluate(loaded.backend, settings.dataset, split, config, progress=progress, ids=ids, on_sample=on_sample)


class _LabelComparison:
    """The fp32 labels kept deflated (label maps shrink to a few KB), then compared pixel by pixel with int8's."""

    def __init__(self) -> None:
        self.reference: dict[str, tuple[tuple[int, ...], bytes]] = {}
        self.changed = self.pixels = 0

    def keep(self, sample_id: str, _image: Any, _label: np.ndarray, pred: np.ndarray) -> None:
        self.reference[sample_id] = (pred.shape, zlib.compress(np.ascontiguousarray(pred, np.uint8).tobytes(), 1))

    def compare(self, sample_id: str, _image: Any, _label: np.ndarray, pred: np.ndarray) -> None:
        shape, packed = self.reference.pop(sample_id)
        reference = np.frombuffer(zlib.decompress(packed), np.uint8).reshape(shape)
        self.changed += int(np.count_nonzero(reference != pred))
        self.pixels += pred.size


def _gate(numbers: dict[str, Any], settings: Int8Settings, out: Path) -> None:
    if numbers["miou_drop"] > settings.max_drop and not settings.force:
        raise RefineError(
            f"int8 costs {numbers['miou_drop']:.2f} mIoU points (fp32 {numbers['miou_fp32']:.2f}, int8 "
            f"{numbers['miou_int8']:.2f}; {100 * numbers['changed_pixels']:.2f}% of pixels changed), above "
            f"--max-drop {settings.max_drop:g}; nothing was written to {out}",
            hint="calibrate on more or more typical images (--calib-images), try --quantizer, raise --max-drop, "
            "or --force to write it anyway",
        )


def export_int8(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: Int8Settings,
    *,
    opset: int | None = None,
    tolerance: float | None = None,
    progress: bool = True,
    notify: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> ExportReport:
    """Export, quantise, score fp32 against int8, gate on the mIoU drop, then write `out` with the numbers inside.

    `notify` gets progress lines; `warn` (else `notify`) is told when the gate scores too few images to mean
    much (under FEW_SCORED_IMAGES: a small own dataset's val split)."""
    from tqdm import tqdm

    out = Path(out)
    if out.is_dir():
        raise RefineError(f"--out {out} is a folder", hint="give a file name, e.g. --out model-int8.onnx")
    calib_ids, scored_name, scored_ids = _plan(settings)
    say = notify or (lambda _: None)
    _warn_if_few(len(scored_ids), scored_name, warn or say)
    with tempfile.TemporaryDirectory(prefix="refine-int8-") as folder:
        fp32_path, int8_path = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        report = export_checkpoint(checkpoint, fp32_path, opset=opset, tolerance=tolerance)
        # a dataset of another class count is refused before the calibration and the scoring (the long part)
        check_classes_match(report.num_classes, settings.dataset.meta, f"checkpoint {Path(checkpoint).name}")
        card = OnnxModelCard.from_props(report.metadata, fp32_path)
        say(f"calibrating on {len(calib_ids)} image(s) of {settings.calib_split} ({settings.quantizer}) ...")
        start = time.perf_counter()
        with tqdm(total=len(calib_ids), desc="calibrate", unit=" img", disable=not progress, leave=False) as bar:
            method = quantize_file(
                fp32_path, int8_path, _calibration(settings, calib_ids, card, lambda: bar.update(1)), settings.quantizer
            )
        calib_seconds = time.perf_counter() - start
        say(f"scoring fp32 and int8 on {len(scored_ids)} image(s) of {scored_name} ({settings.runtime}) ...")
        comparison = _LabelComparison()
        split = settings.eval_split if scored_name == settings.eval_split else settings.calib_split  # (held out)
        fp32 = _score(fp32_path, settings, split, scored_ids, progress, comparison.keep)
        int8 = _score(int8_path, settings, split, scored_ids, progress, comparison.compare)
        numbers = _numbers(fp32, int8, comparison, scored_name, settings)
        _gate(numbers, settings, out)
        quantization = {
            "method": method,
            "quantizer": settings.quantizer,
            "calibration": {"dataset": settings.dataset.meta.name, "split": settings.calib_split,
                            "images": len(calib_ids), "seconds": round(calib_seconds, 2)},
            "evaluation": numbers,
            "max_drop": settings.max_drop,
            "forced": numbers["miou_drop"] > settings.max_drop,
        }  # fmt: skip
        card = dataclasses.replace(card, precision="int8", quantization=quantization)
        set_metadata(int8_path, card.to_props())
        with atomic_path(out) as tmp:
            shutil.copyfile(int8_path, tmp)
    return dataclasses.replace(
        report, out=str(out), precision="int8", bytes=out.stat().st_size, metadata=card.to_props(),
        quantization=quantization,
    )  # fmt: skip


def _warn_if_few(scored: int, scored_name: str, warn: Callable[[str], None]) -> None:
    if scored < FEW_SCORED_IMAGES:
        warn(
            f"the accuracy gate scores only {scored} image(s) ({scored_name}): a drop measured on so few "
            "says little about the images you will predict; a val split of a few dozen makes it count"
        )


def _numbers(
    fp32: EvalReport, int8: EvalReport, comparison: _LabelComparison, scored: str, settings: Int8Settings
) -> dict[str, Any]:
    """Both mIoUs in points, the drop, and the share of scored pixels whose label changed."""
    miou_fp32, miou_int8 = 100 * fp32.miou, 100 * int8.miou
    return {
        "split": scored,
        "images": fp32.num_images,
        "runtime": settings.runtime,
        "miou_fp32": round(miou_fp32, 3),
        "miou_int8": round(miou_int8, 3),
        "miou_drop": round(miou_fp32 - miou_int8, 3),
        "pixel_acc_fp32": round(100 * fp32.scores.pixel_acc, 3),
        "pixel_acc_int8": round(100 * int8.scores.pixel_acc, 3),
        "changed_pixels": comparison.changed / max(1, comparison.pixels),
        "pixels": comparison.pixels,
    }
