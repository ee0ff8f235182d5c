"""torchvision segmentation models as comparison peers (`tv:NAME`), built through the model registry.

They are built without any weights (weights=None, weights_backbone=None) and without the auxiliary
head, and wrapped to return the `out` logits tensor, so they are timed and exported exactly like our
models. Their names and descriptions live in `registry.PEERS`; this module only builds them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from refine_cli.models.registry import ModelInfo


class PeerModel(nn.Module):
    """A torchvision segmentation model that returns the `out` tensor (full input resolution)."""

    def __init__(self, name: str, inner: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.inner = inner
        self.model_name = name
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)["out"]


def build(info: ModelInfo, num_classes: int) -> PeerModel:
    """Registry builder for the `tv:` names: a randomly initialised torchvision model (nothing downloaded)."""
    from torchvision.models import segmentation

    builder: Callable[..., nn.Module] = getattr(segmentation, info.name.removeprefix("tv:"))
    inner = builder(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    return PeerModel(info.name, inner, num_classes)


def create_peer(name: str, num_classes: int = 21) -> nn.Module:
    """Build a peer by name (the same as `create_model(name)`; RefineError for an unknown peer)."""
    from refine_cli.models.registry import create_model

    return create_model(name, num_classes=num_classes)
