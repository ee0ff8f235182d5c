"""Training on own data (`refine prepare custom`): defaults sized to the dataset, class weights, rare-class notes.

Own datasets are small (tens to a few thousand images), so the LW-RefineNet recipe (lw-voc: LW-RefineNet-50,
ImageNet backbone, SGD with the decoder at 10x, the staged multistep schedule) is kept and only its length is
scaled: about OWN_DATA_STEPS optimiser steps, at least 30 and at most 300 epochs, validating ten times.
The ImageNet backbone is used when it can be had (torch hub cache or a download); without it the run trains
from scratch and says so, because that needs far more data.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.format.check import class_balance_notes
from refine_cli.data.format.imageio import read_label
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.engine.train.config import load_recipe
from refine_cli.errors import RefineError

OWN_DATA_STEPS = 4000
OWN_DATA_RECIPE = "lw-voc"
WEIGHT_RANGE = (0.1, 10.0)


def is_own_data(source: UnifiedDataset) -> bool:
    """A dataset written by `refine prepare custom`."""
    return source.meta.converter == "custom"


def split_class_pixels(source: UnifiedDataset, split: str) -> list[int]:
    """Labelled pixels per class over one split (ignore excluded), read from the label PNGs."""
    counts = np.zeros(256, dtype=np.int64)
    for sample_id in source.split_ids(split):
        counts += np.bincount(read_label(source.label_path(sample_id)).ravel(), minlength=256)
    return [int(v) for v in counts[: source.meta.num_classes]]


def balanced_class_weights(pixels: list[int]) -> list[float]:
    """Median-frequency balancing (Eigen & Fergus 2015): weight = median frequency / class frequency.

    Clipped to WEIGHT_RANGE so one nearly absent class cannot dominate the loss; a class with no pixels
    gets 1.0 (its weight never multiplies anything).
    """
    present = [count for count in pixels if count > 0]
    if not present:
        raise RefineError("the training split has no labelled pixels", hint="check the dataset with refine check")
    median = float(np.median(present))
    low, high = WEIGHT_RANGE
    return [round(min(max(median / count, low), high), 4) if count else 1.0 for count in pixels]


def parse_class_weights(text: str, source: UnifiedDataset, split: str) -> list[float] | None:
    """`--class-weights auto | none | w0,w1,...` -> one weight per class (None: unweighted)."""
    if text.strip().lower() == "none":
        return None
    if text.strip().lower() == "auto":
        return balanced_class_weights(split_class_pixels(source, split))
    try:
        weights = [float(part) for part in text.split(",")]
    except ValueError:
        raise RefineError(f"--class-weights {text!r} is not auto, none or a list of numbers") from None
    if len(weights) != source.meta.num_classes or any(not math.isfinite(w) or w < 0 for w in weights):
        raise RefineError(
            f"--class-weights needs {source.meta.num_classes} non-negative numbers (one per class of "
            f"{source.meta.name}), got {text!r}",
            hint="or use --class-weights auto",
        )
    return weights


def own_data_defaults(source: UnifiedDataset, batch: int | None) -> dict[str, Any]:
    """The lw-voc recipe with its length scaled to this dataset's train split (a base config dict)."""
    data = load_recipe(OWN_DATA_RECIPE)
    data.pop("description", None)
    n_train = len(source.split_ids("train"))
    batch = batch or min(int(data["data"]["batch"]), max(1, n_train))
    steps_per_epoch = max(1, n_train // batch)
    epochs = min(300, max(30, math.ceil(OWN_DATA_STEPS / steps_per_epoch)))
    data["data"].update(train_split="train", val_split="val" if "val" in source.splits else None, batch=batch)
    data["train"] = {**data.get("train", {}), "epochs": epochs, "iters": None, "val_every": max(1, epochs // 10)}
    data["recipe"] = f"own data: {OWN_DATA_RECIPE} for {n_train} images"
    data["description"] = (
        f"{OWN_DATA_RECIPE} scaled to {n_train} training images: {epochs} epochs of {steps_per_epoch} step(s) "
        f"({epochs * steps_per_epoch:,} steps), validation every {data['train']['val_every']} epochs"
    )
    return data


def imagenet_weights_available(model: str) -> bool:
    """True when torchvision's ImageNet weights for the model's ResNet are cached or can be downloaded now."""
    from refine_cli.models.registry import model_info

    backbone = model_info(model).backbone
    if not backbone.startswith("resnet"):
        return False
    import torch
    import torchvision.models as tvm

    url = getattr(tvm, f"ResNet{backbone.removeprefix('resnet')}_Weights").IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if cached.is_file():
        return True
    from refine_cli.data.acquire.download import download
    from refine_cli.errors import RefineError

    try:  # refine's download core: resumable, atomic, and a stalled network is given up in seconds, not hours
        download(url, cached, retries=1, progress=True)
    except (RefineError, OSError):  # offline, proxy, disk: the caller trains from scratch and says so
        return False
    return cached.is_file()


def rare_class_notes(source: UnifiedDataset, split: str) -> list[str]:
    """class_balance_notes over the training split (read from its labels: own datasets are small)."""
    pixels = split_class_pixels(source, split)
    return [f"{split}: {note}" for note in class_balance_notes(list(source.meta.classes), pixels)]
