"""torchvision segmentation models as comparison peers (`tv:NAME`) for `refine models` and `refine bench`.

They are built without any weights (weights=None, weights_backbone=None) and without the auxiliary
head, and wrapped to return the `out` logits tensor, so they are timed exactly like our models.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from refine_cli.errors import RefineError

PEER_PREFIX = "tv:"

# name -> (torchvision builder name, backbone, description)
_PEERS: dict[str, tuple[str, str, str]] = {
    "tv:deeplabv3_resnet50": ("deeplabv3_resnet50", "resnet50", "DeepLabV3, dilated ResNet-50 (output stride 8)"),
    "tv:deeplabv3_mobilenet_v3_large": (
        "deeplabv3_mobilenet_v3_large",
        "mobilenet_v3_large",
        "DeepLabV3, dilated MobileNetV3-Large",
    ),
    "tv:lraspp_mobilenet_v3_large": (
        "lraspp_mobilenet_v3_large",
        "mobilenet_v3_large",
        "Lite R-ASPP, MobileNetV3-Large",
    ),
    "tv:fcn_resnet50": ("fcn_resnet50", "resnet50", "FCN, dilated ResNet-50 (output stride 8)"),
}


class PeerModel(nn.Module):
    """A torchvision segmentation model that returns the `out` tensor (full input resolution)."""

    def __init__(self, name: str, inner: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.inner = inner
        self.model_name = name
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)["out"]


def is_peer(name: str) -> bool:
    """True for `tv:...` names."""
    return name.startswith(PEER_PREFIX)


def list_peers() -> list[str]:
    """Every supported peer name."""
    return list(_PEERS)


def peer_info(name: str) -> dict[str, str]:
    """name / family / backbone / description of a peer, in the shape of `model_info`."""
    _check(name)
    _, backbone, description = _PEERS[name]
    return {"name": name, "family": "torchvision", "backbone": backbone, "variant": "peer", "description": description}


def create_peer(name: str, num_classes: int = 21) -> PeerModel:
    """Build a randomly initialised torchvision peer (nothing is downloaded)."""
    _check(name)
    from torchvision.models import segmentation

    builder: Callable[..., nn.Module] = getattr(segmentation, _PEERS[name][0])
    inner = builder(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    return PeerModel(name, inner, num_classes)


def _check(name: str) -> None:
    if name not in _PEERS:
        raise RefineError(f"unknown torchvision peer {name!r}", hint="choose one of: " + ", ".join(_PEERS))
