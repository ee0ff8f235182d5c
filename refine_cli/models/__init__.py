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


def upsample_logits(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize 1/4-resolution logits to the label/image size (bilinear, align_corners=False).

    This is how the reference training loss and evaluation resized logits, so losses and metrics
    computed on the result match the published recipes (the decoder's internal align_corners=True
    is a different, historical choice that the imported weights depend on).
    """
    import torch.nn.functional as F

    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def freeze_batchnorm_stats(model: nn.Module) -> None:
    """Put every BatchNorm in eval mode: running statistics stay fixed, affine weights still train.

    The recipes train with small batches (1 to 6 crops) where batch statistics are too noisy, so
    the ImageNet statistics are kept. Call it after `model.train()`, which would undo it.
    """
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


__all__ = ["ModelInfo", "create_model", "freeze_batchnorm_stats", "list_models", "model_info", "upsample_logits"]
