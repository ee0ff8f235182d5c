"""The model registry: every model name, what it is, and how to build it.

The table is plain data so that `list_models()`/`model_info()` answer without importing torch
(the CLI lists models instantly); builders are imported only when a model is created.
"""

from __future__ import annotations

import difflib
import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refine_cli.class_tables import is_int
from refine_cli.errors import RefineError

if TYPE_CHECKING:
    from torch import nn

RESNET_DEPTHS = (50, 101, 152)
CRP_ORDERS = ("pool-conv", "conv-pool")
RESIZE_MODES = ("bilinear", "matlab-bicubic")


@dataclass(frozen=True)
class ArchitectureOption:
    """A named switch of the `refinenet-*` architecture; its default is the PyTorch port's model."""

    default: Any
    allowed: str  # the valid values, as an error message says them
    valid: Callable[[Any], bool]
    help: str


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Everything `refine convert --from matconvnet` needs to rebuild the MATLAB release exactly.
ARCHITECTURE_OPTIONS: dict[str, ArchitectureOption] = {
    "caffe_stride": ArchitectureOption(
        False, "true or false", lambda v: isinstance(v, bool),
        "ResNet stride 2 in each stage's first 1x1 conv (Caffe, MatConvNet) instead of its 3x3 (torchvision)",
    ),
    "crp_order": ArchitectureOption(
        "pool-conv", " or ".join(CRP_ORDERS), lambda v: v in CRP_ORDERS,
        "chained residual pooling stage: pool then conv (original), or conv then pool (the MATLAB 'improved' CRP)",
    ),
    "crp_stages": ArchitectureOption(
        4, "an integer in 1..8", lambda v: is_int(v) and 1 <= v <= 8, "number of pool/conv stages in every CRP",
    ),
    "resize_mode": ArchitectureOption(
        "bilinear", " or ".join(RESIZE_MODES), lambda v: v in RESIZE_MODES,
        "resize between cascade levels (and of the image for input_scale): bilinear, or MATLAB's bicubic imresize",
    ),
    "input_scale": ArchitectureOption(
        1.0, "a number in [0.25, 4]", lambda v: _number(v) and 0.25 <= v <= 4,
        "the image is resized by this factor inside the model (MATLAB release: 1.2); logits are 1/4 of that size",
    ),
}  # fmt: skip


def check_architecture(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture options of model `name`, checked; only values that differ from the default are kept.

    RefineError names an unknown option, a bad value, or an option given to a model family without them.
    """
    unknown = sorted(str(key) for key in options if key not in ARCHITECTURE_OPTIONS)
    if unknown:
        raise RefineError(
            f"unknown architecture option(s) {', '.join(unknown)}",
            hint="known options: " + ", ".join(ARCHITECTURE_OPTIONS),
        )
    chosen: dict[str, Any] = {}
    for key, value in options.items():
        option = ARCHITECTURE_OPTIONS[key]
        if not option.valid(value):
            raise RefineError(f"architecture option {key} must be {option.allowed}, not {value!r}")
        if value != option.default:
            chosen[key] = float(value) if key == "input_scale" else value
    if chosen and model_info(name).family != "refinenet":
        raise RefineError(
            f"{name} takes no architecture options ({', '.join(chosen)})",
            hint="they describe the refinenet-* models (e.g. converted MatConvNet files)",
        )
    return chosen


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
    **architecture: Any,
) -> nn.Module:
    """Build a registered model with `num_classes` outputs.

    `pretrained_backbone` loads torchvision's ImageNet weights (downloaded once, cached);
    `backbone_weights` loads a local backbone state_dict instead (for offline machines).
    Without either the backbone is randomly initialised. `architecture` holds options of
    ARCHITECTURE_OPTIONS (refinenet-* only); the model keeps the non-default ones in `.architecture`,
    which a checkpoint saved from it records.
    """
    info = model_info(name)
    options = check_architecture(info.name, architecture)
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
    model = builder.build(info, num_classes, **options)
    model.architecture = options
    if pretrained_backbone or backbone_weights is not None:
        from refine_cli.models.backbones import load_backbone_file, load_imagenet_backbone

        for encoder in model.backbones():
            if backbone_weights is not None:
                load_backbone_file(encoder, backbone_weights, f"{info.backbone} backbone weights")
            else:
                load_imagenet_backbone(encoder, info.backbone)
    return model
