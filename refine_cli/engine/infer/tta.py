"""Test-time inference shared by `eval` and `predict`: multi-scale, flip and sliding-window.

Every view's logits are brought back to the ORIGINAL image resolution and turned into softmax
probabilities before averaging (mmseg `SegTTAModel` / DeepLab convention, docs/evaluation.md 2): averaging
probabilities, not logits or labels, keeps each view's confidence comparable across scales.
The model is any callable images -> logits: a PyTorch module or an inference-loop backend (ONNX Runtime).
The `--msc` default scale set is DEFAULT_MSC_SCALES below (the one place it is defined: `refine eval
--msc` and `refine predict --msc` read it from here): the mmseg/DeepLab ratios without 1.75, which
costs the most and gains the least on VOC-sized images. MSC_PRESETS name the protocols of the papers
(`--msc refinenet`). Logits are resized with the one logit resize of refine, `models.upsample_logits`,
which the training loss uses too; `upsample="bicubic"` is the LW-RefineNet notebooks' cv2 INTER_CUBIC.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from refine_cli.errors import RefineError
from refine_cli.models import upsample_logits

if TYPE_CHECKING:  # torch is imported where it is used, so the CLI can read the defaults without it
    import torch

DEFAULT_MSC_SCALES: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)


@dataclass(frozen=True)
class MscPreset:
    """A named multi-scale protocol: scales, and the short-side range the image is first brought into."""

    scales: tuple[float, ...]
    short_side: tuple[int, int] | None  # [min, max]: images outside are resized into it before the scales
    description: str


_REFINENET_SCALES = (0.4, 0.6, 0.8, 1.0, 1.2)
# The MATLAB RefineNet's demo_predict_mscale_*.m: probabilities of 5 scales averaged, no flip, after
# my_get_batch_ds_info.m resized the image so its short side lies in [450, 800] ([600, 1100] for Cityscapes).
MSC_PRESETS: dict[str, MscPreset] = {
    "default": MscPreset(DEFAULT_MSC_SCALES, None, "refine's default scale set"),
    "refinenet": MscPreset(
        _REFINENET_SCALES, (450, 800), "RefineNet (CVPR 2017) demo_predict_mscale_*.m: short side into [450, 800]"
    ),
    "refinenet-cityscapes": MscPreset(
        _REFINENET_SCALES, (600, 1100), "RefineNet demo_predict_mscale_cityscapes.m: short side into [600, 1100]"
    ),
}


@dataclass(frozen=True)
class MscSetting:
    """What `--msc` asked for: the scales, an optional short-side range, and the preset's name if any."""

    scales: tuple[float, ...]
    short_side: tuple[int, int] | None = None
    preset: str | None = None


def resolve_msc(text: str | Sequence[float] | None) -> MscSetting:
    """A preset name ('refinenet') or a scale list ('0.5,1,1.5'); None or '' is the single scale 1."""
    if isinstance(text, str) and text.strip().lower() in MSC_PRESETS:
        name = text.strip().lower()
        preset = MSC_PRESETS[name]
        return MscSetting(preset.scales, preset.short_side, name)
    if isinstance(text, str) and text.strip() and text.strip()[0].isalpha():
        raise RefineError(f"unknown --msc preset {text!r}", hint="presets: " + ", ".join(MSC_PRESETS))
    return MscSetting(parse_scales(text))


def work_short_side(max_short_side: int | None) -> tuple[int, int] | None:
    """The short-side range of a model trained at a working size: larger images come down to it, none go up."""
    return (1, int(max_short_side)) if max_short_side else None


def short_side_factor(height: int, width: int, short_side: tuple[int, int] | None) -> float:
    """The resize that brings the short side into [min, max] (1 when it already is), as the MATLAB demos do."""
    if short_side is None:
        return 1.0
    short = min(height, width)
    low, high = short_side
    return low / short if short < low else high / short if short > high else 1.0


DEFAULT_TILE_OVERLAP = 1.0 / 3.0
Logits = Callable[["torch.Tensor"], "torch.Tensor"]  # (N,3,H,W) normalised images -> (N,C,h,w) logits


def parse_scales(text: str | Sequence[float] | None) -> tuple[float, ...]:
    """'0.5,0.75,1' -> (0.5, 0.75, 1.0); None or '' -> (1.0,); RefineError for nonsense."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return (1.0,)
    if not isinstance(text, str):
        values = [float(v) for v in text]
    else:
        try:
            values = [float(part) for part in text.replace(" ", "").split(",") if part]
        except ValueError:
            raise RefineError(
                f"invalid scale list {text!r}", hint="give comma-separated numbers, e.g. --msc 0.5,0.75,1,1.25,1.5"
            ) from None
    if not values or any(not math.isfinite(v) or v <= 0 or v > 8 for v in values):
        raise RefineError(f"invalid scale list {text!r}", hint="scales must be numbers in (0, 8]")
    return tuple(dict.fromkeys(values))  # drop duplicates, keep order


def view_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """(height, width) of a view scaled by `factor` (the working size times a TTA scale), at least 1 px."""
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Scale a batch of images for one multi-scale view (bilinear, align_corners=False, as mmseg does)."""
    import torch.nn.functional as F

    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def _window_starts(length: int, window: int, stride: int) -> list[int]:
    """Window offsets covering [0, length); the last one is shifted back to end at the border."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def tile_windows(
    height: int, width: int, tile: tuple[int, int], overlap: float = DEFAULT_TILE_OVERLAP
) -> list[tuple[int, int, int, int]]:
    """(top, left, h, w) of the sliding windows; together they cover every pixel at least once."""
    tile_h, tile_w = min(tile[0], height), min(tile[1], width)
    stride_h = max(1, int(math.ceil(tile_h * (1.0 - overlap))))
    stride_w = max(1, int(math.ceil(tile_w * (1.0 - overlap))))
    return [
        (top, left, tile_h, tile_w)
        for top in _window_starts(height, tile_h, stride_h)
        for left in _window_starts(width, tile_w, stride_w)
    ]


def softmax_channels(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the class dimension of (N,C,H,W) logits, in the layout they come in.

    On the CPU, PyTorch's softmax over dim 1 of a channels_last tensor (C innermost) takes a slow
    generic path; the same numbers seen as (N,H,W,C), with the softmax over the last dimension, take
    the fast one. The two agree to 2e-7.
    """
    import torch

    if (
        logits.device.type == "cpu"
        and not logits.is_contiguous()
        and logits.is_contiguous(memory_format=torch.channels_last)
    ):
        return torch.softmax(logits.permute(0, 2, 3, 1), dim=-1).permute(0, 3, 1, 2)
    return torch.softmax(logits, dim=1)


def _forward_probs(
    model: Logits, images: torch.Tensor, size: tuple[int, int], softmax: bool = True, upsample: str = "bilinear"
) -> torch.Tensor:
    """Softmax probabilities of `images` at `size` (the model returns reduced-resolution logits).

    `softmax=False` stops at the resized logits (same argmax), for a single view whose labels are all
    that is wanted. `upsample` is the logit resize (`models.upsample_logits`).
    """
    logits = upsample_logits(model(images).float(), size, upsample)
    return softmax_channels(logits) if softmax else logits


def _tiled_probs(
    model: Logits,
    images: torch.Tensor,
    tile: tuple[int, int],
    overlap: float,
    tile_batch: int,
    upsample: str = "bilinear",
) -> torch.Tensor:
    """Average of per-window probabilities over overlapping windows, at the input's resolution."""
    import torch

    batch, _, height, width = images.shape
    windows = tile_windows(height, width, tile, overlap)
    probs: torch.Tensor | None = None
    counts = torch.zeros(1, 1, height, width, device=images.device)
    per_call = max(1, tile_batch)
    for first in range(0, len(windows), per_call):
        group = windows[first : first + per_call]
        crops = torch.cat([images[:, :, top : top + h, left : left + w] for top, left, h, w in group])
        window_probs = _forward_probs(model, crops, (group[0][2], group[0][3]), upsample=upsample)
        if probs is None:
            probs = torch.zeros(batch, window_probs.shape[1], height, width, device=images.device)
        for index, (top, left, h, w) in enumerate(group):
            probs[:, :, top : top + h, left : left + w] += window_probs[index * batch : (index + 1) * batch]
            counts[:, :, top : top + h, left : left + w] += 1
    assert probs is not None
    return probs / counts


def predict_batch_probs(
    model: Logits,
    images: torch.Tensor,
    scales: Iterable[float] = (1.0,),
    flip: bool = False,
    tile: tuple[int, int] | None = None,
    overlap: float = DEFAULT_TILE_OVERLAP,
    tile_batch: int = 4,
    labels_only: bool = False,
    upsample: str = "bilinear",
    short_side: tuple[int, int] | None = None,
) -> torch.Tensor:
    """(N,3,H,W) normalised images -> (N,C,H,W) class probabilities averaged over all views.

    Views: every scale, each also horizontally flipped when `flip` (the flipped prediction is
    flipped back before averaging). With `tile`, each view is processed in overlapping windows of
    that size (in the scaled image) whose probabilities are averaged, so large images fit in memory.
    `short_side` = (min, max) first rescales every view so the image's short side lies in that range
    (the MATLAB RefineNet demos); `upsample` is how logits reach the image size (bilinear / bicubic).

    `labels_only` (the caller takes the argmax and nothing else): with a single view there is
    nothing to average, so the resized logits are returned instead of their softmax, which costs
    more than the upsampling and the argmax together at 512x512 on a CPU. The argmax is that of
    the logits, as in the official demo code; a softmax could only add ties by rounding.
    """
    import torch

    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (N, 3, H, W) images, got {tuple(images.shape)}")
    batch, _, height, width = images.shape
    scales = list(scales)
    softmax = not (labels_only and len(scales) == 1 and not flip)  # nothing to average: logits will do
    total: torch.Tensor | None = None
    views = 0
    base = short_side_factor(height, width, short_side)
    with torch.inference_mode():
        for scale in scales:
            size = view_size(height, width, base * scale)
            scaled = images if size == (height, width) else resize_images(images, size)
            inputs = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
            if tile is None:
                probs = _forward_probs(model, inputs, (height, width), softmax, upsample)
            else:
                window_probs = _tiled_probs(model, inputs, tile, overlap, tile_batch, upsample)
                probs = upsample_logits(window_probs, (height, width), upsample)
            if flip:
                probs = probs[:batch] + probs[batch:].flip(-1)
            total = probs if total is None else total.add_(probs)
            views += 2 if flip else 1
        if total is None:
            raise ValueError("at least one scale is required")
        return total if views == 1 else total.div_(views)


def predict_probs(
    model: Logits,
    image: torch.Tensor,
    scales: Iterable[float] = (1.0,),
    flip: bool = False,
    tile: tuple[int, int] | None = None,
    overlap: float = DEFAULT_TILE_OVERLAP,
) -> torch.Tensor:
    """One normalised image, (1,3,H,W) or (3,H,W) -> (C,H,W) averaged softmax probabilities."""
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.shape[0] != 1:
        raise ValueError("predict_probs takes one image; use predict_batch_probs for a batch")
    return predict_batch_probs(model, image, scales=scales, flip=flip, tile=tile, overlap=overlap)[0]
