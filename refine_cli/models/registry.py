"""The model registry: every model name, what it is, and how to build it.

The table is plain data so that `list_models()`/`model_info()` answer without importing torch
(the CLI lists models instantly); builders are imported only when a model is created.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from refine_cli.errors import RefineError

if TYPE_CHECKING:
    from torch import nn

RESNET_DEPTHS = (50, 101, 152)


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model is; `family` picks the builder module."""

    name: str
    family: str  # "refinenet" | "lw-refinenet" | "torchvision" (peers)
    backbone: str  # "resnet50" | "resnet101" | "resnet152" | "mobilenetv2" | a torchvision backbone
    variant: str  # "cascade4" | "cascade2" | "single" | "2scale" | "lw" | "peer"
    description: str


def _table() -> dict[str, ModelInfo]:
    variants = {
        "cascade4": ("", "RefineNet, 4-cascade: the original CVPR 2017 model"),
        "cascade2": ("-cascade2", "RefineNet, 2-cascade (paper 4.3): blocks on {l4,l3} then {l2,l1}"),
        "single": ("-single", "RefineNet, single block (paper 4.3) fusing all four ResNet outputs"),
        "2scale": ("-2scale", "RefineNet, 4-cascade 2-scale (paper 4.3): two ResNets on the image x1.2 and x0.6"),
    }
    infos = []
    for depth in RESNET_DEPTHS:
        for variant, (suffix, text) in variants.items():
            infos.append(
                ModelInfo(
                    f"refinenet-{depth}{suffix}", "refinenet", f"resnet{depth}", variant, f"{text}; ResNet-{depth}"
                )
            )
        infos.append(
            ModelInfo(
                f"lw-refinenet-{depth}",
                "lw-refinenet",
                f"resnet{depth}",
                "lw",
                f"Light-Weight RefineNet (BMVC 2018); ResNet-{depth}",
            )
        )
    infos.append(
        ModelInfo(
            "lw-refinenet-mobilenetv2",
            "lw-refinenet",
            "mobilenetv2",
            "lw",
            "Light-Weight RefineNet (BMVC 2018); MobileNetV2 (official layout), 3.3M parameters",
        )
    )
    return {info.name: info for info in infos}


MODELS: dict[str, ModelInfo] = _table()
PEER_PREFIX = "tv:"
# torchvision segmentation models for comparison (`refine models`, `refine bench`): name -> backbone, description
PEERS: dict[str, ModelInfo] = {
    name: ModelInfo(name, "torchvision", backbone, "peer", description)
    for name, backbone, description in (
        ("tv:deeplabv3_resnet50", "resnet50", "DeepLabV3, dilated ResNet-50 (output stride 8)"),
        ("tv:deeplabv3_mobilenet_v3_large", "mobilenet_v3_large", "DeepLabV3, dilated MobileNetV3-Large"),
        ("tv:lraspp_mobilenet_v3_large", "mobilenet_v3_large", "Lite R-ASPP, MobileNetV3-Large"),
        ("tv:fcn_resnet50", "resnet50", "FCN, dilated ResNet-50 (output stride 8)"),
    )
}
_BUILDERS = {
    "refinenet": "refine_cli.models.refinenet",
    "lw-refinenet": "refine_cli.models.lw_refinenet",
    "torchvision": "refine_cli.models.peers",
}


def list_models(include_peers: bool = False) -> list[str]:
    """All registered RefineNet-family model names, sorted; then the `tv:` peers with `include_peers`."""
    return sorted(MODELS) + (list(PEERS) if include_peers else [])


def is_peer(name: str) -> bool:
    """True for `tv:...` names (torchvision comparison models)."""
    return name.startswith(PEER_PREFIX)


def model_info(name: str) -> ModelInfo:
    """The registry entry for `name`; RefineError (with the closest valid name) when unknown."""
    if isinstance(name, str) and is_peer(name.strip().lower()):
        peer = PEERS.get(name.strip().lower())
        if peer is None:
            raise RefineError(f"unknown torchvision peer {name!r}", hint="choose one of: " + ", ".join(PEERS))
        return peer
    info = MODELS.get(name.strip().lower()) if isinstance(name, str) else None
    if info is None:
        close = difflib.get_close_matches(str(name).lower(), list_models(), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]}? " if close else ""
        raise RefineError(f"unknown model {name!r}", hint=f"{hint}valid models: {', '.join(list_models())}")
    return info


def create_model(
    name: str,
    num_classes: int = 21,
    pretrained_backbone: bool = False,
    backbone_weights: str | Path | None = None,
) -> nn.Module:
    """Build a registered model with `num_classes` outputs.

    `pretrained_backbone` loads torchvision's ImageNet weights (downloaded once, cached);
    `backbone_weights` loads a local backbone state_dict instead (for offline machines).
    Without either the backbone is randomly initialised.
    """
    info = model_info(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise RefineError(f"num_classes must be a positive integer, not {num_classes!r}", hint="e.g. 21 for VOC")
    if info.family == "torchvision" and (pretrained_backbone or backbone_weights is not None):
        raise RefineError(f"{name} is a comparison peer: it is built without weights", hint="drop the backbone weights")
    if pretrained_backbone and backbone_weights is not None:
        raise RefineError(
            "both pretrained_backbone and backbone_weights were given",
            hint="use --backbone-weights FILE for local weights, or the download, not both",
        )
    builder = importlib.import_module(_BUILDERS[info.family])
    model = builder.build(info, num_classes)
    if pretrained_backbone or backbone_weights is not None:
        from refine_cli.models.backbones import load_backbone_file, load_imagenet_backbone

        for encoder in model.backbones():
            if backbone_weights is not None:
                load_backbone_file(encoder, backbone_weights, f"{info.backbone} backbone weights")
            else:
                load_imagenet_backbone(encoder, info.backbone)
    return model
