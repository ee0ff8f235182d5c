"""Evaluate a model (or a folder of saved predictions) on one split of a unified dataset.

One path for every number refine reports: predictions are made at (or brought back to) the
label's ORIGINAL resolution and accumulated in `metrics.ConfusionMatrix`; labels are never resized.
`train`'s validation calls `evaluate` with its defaults; `refine eval` adds TTA, CRF and saving.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from refine_cli.data.format.imageio import encode_label_png, read_label
from refine_cli.data.format.palette import palette_array
from refine_cli.data.format.unified import DatasetMeta, UnifiedDataset
from refine_cli.engine.eval.metrics import ConfusionMatrix, Scores
from refine_cli.engine.infer.loop import Backend, InferenceConfig, as_backend, prefetch, run_inference
from refine_cli.errors import RefineError
from refine_cli.fileio import write_bytes_atomic

# on_sample(sample_id, image_rgb, label, pred): called once per scored image with HxW uint8 arrays at label
# size (image_rgb HxWx3, or None when scoring saved predictions, where the image is never decoded).
SampleCallback = Callable[[str, np.ndarray | None, np.ndarray, np.ndarray], None]

# Always present in EvalReport.to_json() (null where not applicable, e.g. scales when scoring files).
_SETTING_KEYS = (
    "dataset",
    "dataset_path",
    "split",
    "checkpoint",
    "model",
    "runtime",
    "precision",
    "predictions",
    "protocol",
    "scales",
    "short_side",
    "flip",
    "upsample",
    "tile",
    "crf",
)


@dataclass
class EvalReport:
    """Scores plus everything needed to reproduce them (settings, data set, image count)."""

    scores: Scores
    class_names: list[str]
    num_images: int
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def miou(self) -> float:
        return self.scores.miou

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: fractions in [0, 1], null for skipped classes, and the settings used."""
        settings = {key: None for key in _SETTING_KEYS}
        settings.update(self.settings)
        return {
            **self.scores.summary(),
            "num_images": self.num_images,
            "per_class": self.scores.per_class(self.class_names),
            **settings,
            "seconds": round(self.seconds, 3),
        }


def _split_ids(dataset: UnifiedDataset, split: str, limit: int | None) -> list[str]:
    ids = dataset.split_ids(split)
    if limit is not None:
        ids = ids[: max(0, limit)]
    if not ids:
        raise RefineError(f"split {split!r} of {dataset.path.name} has no samples", hint="check the split file")
    return ids


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _progress_bar(total: int, desc: str, enabled: bool):  # noqa: ANN202 - a tqdm instance
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=" img", disable=not enabled, leave=False)


def check_classes_match(model_classes: int | None, meta: DatasetMeta, model: str = "the model") -> None:
    """A model is scored only on a dataset with its class count (None: a model that does not say)."""
    if model_classes is not None and int(model_classes) != meta.num_classes:
        raise RefineError(
            f"{model} predicts {model_classes} classes but dataset {meta.name} has {meta.num_classes}",
            hint="evaluate on the dataset the checkpoint was trained for",
        )


def evaluate(
    model: nn.Module | Backend,
    dataset: UnifiedDataset,
    split: str,
    config: InferenceConfig = InferenceConfig(),  # noqa: B008 - frozen, so one shared default is safe
    *,
    device: torch.device | str | None = None,
    save_pred_dir: Path | None = None,
    progress: bool = True,
    limit: int | None = None,
    settings: dict[str, Any] | None = None,
    distributed: bool = False,
    on_sample: SampleCallback | None = None,
    notify: Callable[[str], None] | None = None,
    protocol: str | None = None,
    ids: Sequence[str] | None = None,
) -> EvalReport:
    """Score `model` (an nn.Module or an inference-loop backend, e.g. ONNX Runtime) on `split`.

    An nn.Module is put in eval mode (callers in training restore train mode). `config` says how each
    image is predicted (TTA, tiles, CRF, batch, test protocol); `protocol` names the `--msc` preset it
    came from. `settings` entries (e.g. the checkpoint path) are merged into the report's settings. With
    `distributed` and an initialised process group, each rank scores every world_size-th image and the
    matrices are summed, so every rank returns the same full-split report and no image counts twice.

    `on_sample(sample_id, image_rgb, label, pred)` is called once per image, in split order, on the
    calling thread, right after the image is scored (and its PNG saved): NumPy arrays at the label's
    resolution (label as stored, ignore pixels included; pred after TTA and CRF). With `distributed`,
    each rank sees only its own images. An exception from it stops the evaluation. `ids` scores these
    samples instead of the split's (e.g. images held out by `refine export --int8`).
    """
    meta = dataset.meta
    backend = as_backend(model)
    check_classes_match(backend.num_classes, meta)
    all_ids = list(ids) if ids is not None else _split_ids(dataset, split, limit)
    rank, world = _rank_and_world() if distributed else (0, 1)
    device = torch.device(device) if device is not None else backend.device
    scorer = _Scorer(dataset, device, save_pred_dir, on_sample)
    start = time.perf_counter()
    _score_all(backend, dataset, all_ids[rank::world], scorer, config, (f"eval {meta.name}/{split}", progress, notify))
    if world > 1:
        scorer.matrix.reduce_distributed()
    resolved = _inference_settings(dataset, split, config, backend, device)
    resolved = {**resolved, "protocol": protocol, **(settings or {})}
    return EvalReport(scorer.matrix.compute(), list(meta.classes), len(all_ids), resolved, time.perf_counter() - start)


def _score_all(
    backend: Backend, dataset: UnifiedDataset, ids: list[str], scorer: _Scorer, config: InferenceConfig,
    show: tuple[str, bool, Callable[[str], None] | None],
) -> None:  # fmt: skip
    """Predict and score every sample of `ids` (decoding ahead of the model); `show` is (bar title, bar or not,
    where notes go)."""
    title, progress, notify = show
    bar = _progress_bar(len(ids), title, progress)
    pairs = prefetch(lambda sample_id: _image_and_label(dataset, sample_id), ids)
    samples = (((sample_id, label), image) for sample_id, (image, label) in pairs)
    try:
        for prediction in run_inference(backend, samples, config, notify=notify):
            sample_id, label = prediction.key
            scorer.record(sample_id, prediction.label, label, prediction.image)
            bar.update(1)
    finally:
        bar.close()


def _inference_settings(
    dataset: UnifiedDataset, split: str, config: InferenceConfig, backend: Backend, device: torch.device
) -> dict[str, Any]:
    """What was scored, how the views were made and what ran them, as the report records it."""
    return {
        "dataset": dataset.meta.name,
        "dataset_path": str(dataset.path),
        "split": split,
        "scales": [float(s) for s in config.scales],
        "flip": bool(config.flip),
        "tile": list(config.tile) if config.tile else None,
        "crf": config.crf.to_dict() if config.crf is not None else None,
        "upsample": config.upsample,
        "short_side": list(config.short_side) if config.short_side else None,
        "device": str(device),
        "runtime": backend.runtime,
        "precision": backend.precision,
    }


def _image_and_label(dataset: UnifiedDataset, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
    """One sample's image and label, refused when their sizes differ (scores are at the label's resolution)."""
    image, label = dataset.read_image(sample_id), dataset.read_label(sample_id)
    if image.shape[:2] != label.shape:
        raise RefineError(
            f"{dataset.label_path(sample_id)} is {label.shape[1]}x{label.shape[0]} but its image is "
            f"{image.shape[1]}x{image.shape[0]}",
            hint="the data set is inconsistent; run `refine prepare` again",
        )
    return image, label


class _Scorer:
    """The run's one confusion matrix, fed a prediction at a time; also saves PNGs and calls `on_sample`."""

    def __init__(
        self,
        dataset: UnifiedDataset,
        device: torch.device | None = None,
        save_pred_dir: Path | None = None,
        on_sample: SampleCallback | None = None,
    ) -> None:
        meta = dataset.meta
        self.dataset, self.device, self.on_sample = dataset, device, on_sample
        self.matrix = ConfusionMatrix(meta.num_classes, meta.ignore_index, device=device)
        self.save_pred_dir = Path(save_pred_dir) if save_pred_dir is not None else None
        self.table = palette_array(meta.palette, meta.num_classes, meta.ignore_index)
        if self.save_pred_dir is not None:
            self.save_pred_dir.mkdir(parents=True, exist_ok=True)

    def record(
        self, sample_id: str, pred: torch.Tensor | np.ndarray, label: np.ndarray, image: np.ndarray | None
    ) -> None:
        """Count one prediction; a label value outside the classes is refused naming the label file."""
        target = torch.from_numpy(label).to(self.device) if self.device is not None else label
        try:
            self.matrix.update(pred, target)
        except RefineError as error:
            raise RefineError(f"{self.dataset.label_path(sample_id)}: {error.message}", hint=error.hint) from None
        if self.save_pred_dir is None and self.on_sample is None:
            return
        pred_np = (pred.cpu().numpy() if isinstance(pred, torch.Tensor) else pred).astype(np.uint8, copy=False)
        if self.save_pred_dir is not None:
            write_bytes_atomic(self.save_pred_dir / f"{sample_id}.png", encode_label_png(pred_np, self.table))
        if self.on_sample is not None:
            self.on_sample(sample_id, image, label, pred_np)


def score_predictions(
    pred_dir: Path,
    dataset: UnifiedDataset,
    split: str,
    *,
    progress: bool = True,
    limit: int | None = None,
    on_sample: SampleCallback | None = None,
) -> EvalReport:
    """Score saved label PNGs `pred_dir/<id>.png` (from refine or any other tool) against `split`.

    A missing prediction, one of the wrong size, or one with a class outside [0, C) is an error
    naming the file: a silently partial score would look like a real one.
    """
    pred_dir = Path(pred_dir)
    meta = dataset.meta
    ids = _split_ids(dataset, split, limit)
    _check_prediction_folder(pred_dir, ids)
    scorer = _Scorer(dataset, on_sample=on_sample)

    def load(sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        path = pred_dir / f"{sample_id}.png"
        try:
            pred = read_label(path, what="prediction")
        except RefineError as error:
            raise RefineError(
                error.message, hint="predictions must be single-channel class-index PNGs (8-bit gray or palette)"
            ) from None
        label = dataset.read_label(sample_id)
        _check_prediction(path, pred, label, meta)
        return pred, label

    start = time.perf_counter()
    bar = _progress_bar(len(ids), f"score {pred_dir.name}", progress)
    try:
        for sample_id, (pred, label) in prefetch(load, ids):
            scorer.record(sample_id, pred, label, None)
            bar.update(1)
    finally:
        bar.close()
    settings = {"dataset": meta.name, "dataset_path": str(dataset.path), "split": split, "predictions": str(pred_dir)}
    return EvalReport(scorer.matrix.compute(), list(meta.classes), len(ids), settings, time.perf_counter() - start)


def _check_prediction_folder(pred_dir: Path, ids: list[str]) -> None:
    """Every prediction of the split is there: a silently partial score would look like a real one."""
    if not pred_dir.is_dir():
        what = "is a file, not a folder" if pred_dir.exists() else "does not exist"
        raise RefineError(f"prediction folder {pred_dir} {what}", hint="give the folder of <id>.png files")
    missing = [sample_id for sample_id in ids if not (pred_dir / f"{sample_id}.png").is_file()]
    if missing:
        raise RefineError(
            f"{len(missing)} of {len(ids)} predictions are missing from {pred_dir}, e.g. {pred_dir / missing[0]}.png",
            hint="predict every image of the split (file names must be <id>.png)",
        )


def _check_prediction(path: Path, pred: np.ndarray, label: np.ndarray, meta: DatasetMeta) -> None:
    """A saved prediction has its label's size and only class indices (never the ignore value)."""
    if pred.shape != label.shape:
        raise RefineError(
            f"prediction {path} is {pred.shape[1]}x{pred.shape[0]}, its label is {label.shape[1]}x{label.shape[0]}",
            hint="save predictions at the label's original resolution",
        )
    if int(pred.max()) >= meta.num_classes:
        raise RefineError(
            f"prediction {path} contains class {int(pred.max())}, outside [0, {meta.num_classes - 1}]",
            hint=f"{meta.name} has {meta.num_classes} classes; predictions must not use the ignore value",
        )
