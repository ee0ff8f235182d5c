"""RefineNet-family models: `create_model(name)` builds any registered model.

Every model maps images [N,3,H,W] to logits [N,C,ceil(H/4),ceil(W/4)] and exposes `num_classes`,
`model_name`, `encoder_parameters()` and `decoder_parameters()`. Importing this package does not
import torch; building a model does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from refine_cli.models.registry import ModelInfo, create_model, list_models, model_info

if TYPE_CHECKING:
    from torch import Tensor, nn


LOGIT_UPSAMPLE_MODES = ("bilinear", "bicubic")


def upsample_logits(logits: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """Resize reduced-resolution logits to the label/image size (align_corners=False).

    "bilinear" is how the reference training loss and the LW-RefineNet v2 evaluation resized logits,
    so losses and metrics match the published recipes (the decoder's internal align_corners=True is a
    different, historical choice that the imported weights depend on). "bicubic" is PyTorch's cubic
    convolution (a = -0.75, half-pixel centres, edge pixels repeated), the kernel of OpenCV's
    INTER_CUBIC that the LW-RefineNet notebooks and v1 validation used on the logits.
    """
    import torch.nn.functional as F

    if mode not in LOGIT_UPSAMPLE_MODES:
        raise ValueError(f"upsample mode must be one of {LOGIT_UPSAMPLE_MODES}, not {mode!r}")
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode=mode, align_corners=False)


def freeze_batchnorm_stats(model: nn.Module) -> None:
    """Put every BatchNorm in eval mode: running statistics stay fixed, affine weights still train.

    The recipes train with small batches (1 to 6 crops) where batch statistics are too noisy, so
    the ImageNet statistics are kept. Call it after `model.train()`, which would undo it.
    """
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


__all__ = [
    "LOGIT_UPSAMPLE_MODES",
    "ModelInfo",
    "create_model",
    "freeze_batchnorm_stats",
    "list_models",
    "model_info",
    "upsample_logits",
]
