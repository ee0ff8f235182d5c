"""Input normalisation shared by training, evaluation and prediction.

RefineNet-family models see RGB/255 normalised with the ImageNet mean and std (the PyTorch ports'
convention, docs/models.md) unless their checkpoint states its own: a converted MatConvNet model
wants RGB 0-255 minus 128 (mean 128/255, std 1/255), which `Checkpoint.build_model` puts on the
module as `input_normalization`. Keeping the constants and that rule in one module guarantees that
training, inference and export use exactly the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def input_normalization(model: object) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) `model` expects: its own `input_normalization`, else ImageNet's.

    Looks through the wrappers training and inference put around a module (DDP's `.module`,
    torch.compile's `._orig_mod`).
    """
    inner = getattr(model, "module", model)
    inner = getattr(inner, "_orig_mod", inner)
    own = getattr(inner, "input_normalization", None)
    if own is None:
        return IMAGENET_MEAN, IMAGENET_STD
    mean, std = own
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def normalize_image(
    image: np.ndarray,
    device: torch.device | str | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (3, H, W) float32 tensor, (x/255 - mean) / std.

    The uint8 -> float conversion happens on `device`, so only a quarter of the bytes cross PCIe.
    `mean`/`std` default to ImageNet's; an exported ONNX file states its own.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(image)).to(device=device)
    tensor = tensor.permute(2, 0, 1).to(torch.float32).div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=tensor.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=tensor.device).view(3, 1, 1)
    return tensor.sub_(mean_t).div_(std_t)


def denormalize_image(tensor: torch.Tensor) -> np.ndarray:
    """(3, H, W) normalised tensor -> HxWx3 uint8 RGB (for overlays and debugging)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=tensor.dtype, device=tensor.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=tensor.dtype, device=tensor.device).view(3, 1, 1)
    rgb = (tensor * std + mean).clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return rgb.permute(1, 2, 0).cpu().numpy()
