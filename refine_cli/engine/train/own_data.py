"""Training on own data (`refine prepare custom`): a plan sized to the dataset, class weights, rare-class notes.

The plan: the model whose ImageNet weights can be had and that suits the device (`choose_model`);
crops of at most the images' median short side, a multiple of 32, never an upscale to VOC sizes
(`plan_crop`); the batch from the crop (`plan_batch`); about OWN_DATA_STEPS optimiser steps, at least 30
and at most 300 epochs, validating ten times. From ImageNet it is the LW-RefineNet recipe (SGD, decoder
at 10x, frozen BatchNorm, the staged multistep schedule); from scratch it is FROM_SCRATCH.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.format.check import class_balance_notes
from refine_cli.data.format.image_sizes import ImageSizes, dataset_image_sizes
from refine_cli.data.format.imageio import read_label
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.engine.train.config import load_recipe
from refine_cli.errors import RefineError

OWN_DATA_STEPS = 4000
OWN_DATA_RECIPE = "lw-voc"
MOBILE_RECIPE = "lw-mbv2-voc"  # the LW recipe with MobileNetV2's doubled learning rates
RESNET_MODEL, MOBILE_MODEL = "lw-refinenet-50", "lw-refinenet-mobilenetv2"
GPU_MIN_GIB_FOR_RESNET = 8.0
MAX_CROP = 512
# Photos whose median short side is above WORK_SIDE_ABOVE (phone and drone pictures: 3000 px) are trained,
# validated and later predicted at a short side of WORK_SIDE, as the papers' datasets are (VOC ~375-500 px):
# at their own size a 512 crop sees a sixth of the picture, and a CPU needs ~30 s per 12-Mpixel image.
WORK_SIDE_ABOVE = 1024
WORK_SIDE = 640
MAX_WARMUP = 200
# Training from scratch (no ImageNet weights): BatchNorm learns its statistics, one learning rate for
# encoder and decoder (nothing is pretrained to protect), a linear warm-up, the global gradient norm
# clipped, and poly decay. Measured stable on 12 models of `refine models` (docs/benchmarks.md).
FROM_SCRATCH: dict[str, Any] = {
    "encoder_lr": 1e-2,
    "decoder_lr_mult": 1.0,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "schedule": "poly",
    "poly_power": 0.9,
    "grad_clip": 5.0,
    "restart_at_milestones": False,
}
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


@dataclass(frozen=True)
class ModelChoice:
    """The model of an own-data run, whether it starts from ImageNet, and why (for the plan line)."""

    name: str
    imagenet: bool
    reason: str


def choose_model(device: str, gpu_memory_gib: float | None, has_weights: Callable[[str], bool]) -> ModelChoice:
    """The first model of the device's preference whose ImageNet weights can be had.

    A CPU (or a GPU under GPU_MIN_GIB_FOR_RESNET) gets LW-RefineNet-MobileNetV2 first: 2.2 GMACs per
    256x256 image against 8.0 for LW-RefineNet-50; a larger GPU gets LW-RefineNet-50 first (more accurate, and
    its speed there is not the bottleneck). Without any ImageNet weights it is MobileNetV2 from scratch:
    a small network is the one that can learn from few images.
    """
    big_gpu = device.startswith("cuda") and (gpu_memory_gib or 0) >= GPU_MIN_GIB_FOR_RESNET
    order = (RESNET_MODEL, MOBILE_MODEL) if big_gpu else (MOBILE_MODEL, RESNET_MODEL)
    where = f"a GPU with {gpu_memory_gib:.0f} GiB" if device.startswith("cuda") else "a CPU"
    for rank, name in enumerate(order):
        if has_weights(name):
            fit = "the model that suits" if rank == 0 else f"{order[0]} has no ImageNet weights here; next best for"
            return ModelChoice(name, True, f"ImageNet weights available, {fit} {where}")
    return ModelChoice(MOBILE_MODEL, False, "no ImageNet weights to be had (offline?): the small model, from scratch")


def plan_work_side(sizes: ImageSizes | None) -> int | None:
    """WORK_SIDE for photos larger than WORK_SIDE_ABOVE (median short side), else None: their own size."""
    return WORK_SIDE if sizes is not None and sizes.median_short_side > WORK_SIDE_ABOVE else None


def plan_crop(sizes: ImageSizes | None) -> int:
    """At most the median short side, a multiple of 32, between 32 and MAX_CROP (500 without statistics)."""
    if sizes is None:
        return 500
    return int(min(MAX_CROP, max(32, sizes.median_short_side // 32 * 32)))


def plan_batch(crop: int, n_train: int) -> int:
    """About the LW recipe's pixels per step (6 crops of 500x500), 2 to 16 crops, no more than the images."""
    by_pixels = round(6 * (500 / crop) ** 2)
    return max(1, min(16, max(2, by_pixels), n_train))


def own_data_defaults(
    source: UnifiedDataset, batch: int | None, model: str = RESNET_MODEL, imagenet: bool = True
) -> dict[str, Any]:
    """The config (a base dict) for own data: sized to its images, as long as its size asks, and a recipe
    that trains `model` from ImageNet (the LW recipe) or from scratch (FROM_SCRATCH)."""
    recipe = MOBILE_RECIPE if model == MOBILE_MODEL else OWN_DATA_RECIPE
    data = load_recipe(recipe)
    data.pop("description", None)
    sizes = dataset_image_sizes(source)
    n_train = len(source.split_ids("train"))
    crop, work_side = plan_crop(sizes), plan_work_side(sizes)
    batch = batch or plan_batch(crop, n_train)
    steps_per_epoch = max(1, n_train // batch)
    epochs = min(300, max(30, math.ceil(OWN_DATA_STEPS / steps_per_epoch)))
    data["model"] = {**data["model"], "name": model, "pretrained_backbone": imagenet}
    data["data"].update(
        train_split="train", val_split="val" if "val" in source.splits else None, batch=batch, crop=crop,
        min_short_side=crop if sizes is not None else data["data"]["min_short_side"], max_short_side=work_side,
    )  # fmt: skip
    data["train"] = {**data.get("train", {}), "epochs": epochs, "iters": None, "val_every": max(1, epochs // 10)}
    if not imagenet:
        recipe = "from-scratch"
        data["model"]["freeze_bn"] = False
        steps = epochs * steps_per_epoch
        warmup = min(MAX_WARMUP, max(10, steps // 20))
        data["optim"] = {**data["optim"], **FROM_SCRATCH, "warmup_iters": warmup}
    data["recipe"] = f"own data: {recipe} for {n_train} images"
    sized = f"crop {crop} ({sizes.describe()})" if sizes is not None else f"crop {crop}"
    if work_side:
        sized += f", worked at a short side of {work_side}"
    data["description"] = (
        f"the {recipe} recipe sized to {n_train} training images, {sized}: {epochs} epochs of "
        f"{steps_per_epoch} step(s) ({epochs * steps_per_epoch:,} steps), "
        f"validation every {data['train']['val_every']} epochs"
    )
    return data


def imagenet_weights_available(model: str) -> bool:
    """True when torchvision's ImageNet weights for the model's backbone are cached or can be downloaded now."""
    from refine_cli.models.backbones import imagenet_weights
    from refine_cli.models.registry import model_info

    weights = imagenet_weights(model_info(model).backbone)
    if weights is None:
        return False
    import torch

    cached = Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    if cached.is_file():
        return True
    from refine_cli.data.acquire.download import download

    try:  # refine's download core: resumable, atomic, and a stalled network is given up in seconds, not hours
        download(weights.url, cached, retries=1, progress=True)
    except (RefineError, OSError):  # offline, proxy, disk: the caller trains from scratch and says so
        return False
    return cached.is_file()


def rare_class_notes(source: UnifiedDataset, split: str) -> list[str]:
    """class_balance_notes over the training split (read from its labels: own datasets are small)."""
    pixels = split_class_pixels(source, split)
    return [f"{split}: {note}" for note in class_balance_notes(list(source.meta.classes), pixels)]
