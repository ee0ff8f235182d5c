"""ResNet encoders (torchvision's, so its ImageNet weights and the official checkpoints' keys fit as-is)
and the loading of backbone weights (torchvision's ImageNet weights or a local file) into every encoder.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from refine_cli.errors import RefineError
from refine_cli.models.mobilenet_v2 import MobileNetV2Encoder, is_torchvision_state, official_from_torchvision
from refine_cli.models.weights import drop_prefixes, load_strict, read_state_dict, short_reason

RESNET_DEPTHS = (50, 101, 152)
_BACKBONE_HINT = "check that the file is for this backbone"


class ResNetEncoder(nn.Module):
    """A torchvision ResNet without avgpool/fc that returns its four stage outputs [l1, l2, l3, l4].

    Strides 4/8/16/32 with 256/512/1024/2048 channels. In training mode dropout (p=0.5 by default)
    is applied to l3 and l4 after l4 has been computed from the undropped l3, as in the reference
    code; it is a no-op in eval mode.

    `caffe_stride` puts the stride 2 of layer2..layer4 in the first block's 1x1 conv instead of its 3x3,
    as in the original Caffe ResNets (and MatConvNet's import of them, which the MATLAB RefineNet used):
    the same weights and output sizes, different numbers.
    """

    channels = (256, 512, 1024, 2048)

    def __init__(self, depth: int, dropout: float = 0.5, caffe_stride: bool = False) -> None:
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"ResNet depth must be one of {RESNET_DEPTHS}, not {depth}")
        import torchvision.models as tvm

        trunk = getattr(tvm, f"resnet{depth}")(weights=None)
        self.depth = depth
        self.conv1, self.bn1, self.relu, self.maxpool = trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4
        self.dropout = nn.Dropout(dropout)
        self.caffe_stride = caffe_stride
        if caffe_stride:
            for layer in (self.layer2, self.layer3, self.layer4):
                first = layer[0]
                first.conv1.stride, first.conv2.stride = first.conv2.stride, first.conv1.stride

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        l1 = self.layer1(x)
        l2 = self.layer2(l1)
        l3 = self.layer3(l2)
        l4 = self.layer4(l3)
        return [l1, l2, self.dropout(l3), self.dropout(l4)]


def imagenet_weights(backbone: str):  # noqa: ANN201 - a torchvision WeightsEnum member
    """torchvision's ImageNet weights for a registry backbone name, or None when it has none.

    IMAGENET1K_V1 throughout: the classic 76.1 % top-1 ResNets the papers started from, and the
    71.9 % MobileNetV2 (the official LW encoder's own ImageNet accuracy was 72.0 %).
    """
    import torchvision.models as tvm

    if backbone.startswith("resnet") and backbone.removeprefix("resnet").isdigit():
        return getattr(tvm, f"ResNet{backbone.removeprefix('resnet')}_Weights").IMAGENET1K_V1
    if backbone == "mobilenetv2":
        return tvm.MobileNet_V2_Weights.IMAGENET1K_V1
    return None


def encoder_state(encoder: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A backbone state_dict in `encoder`'s layout: ImageNet classifiers dropped, torchvision's MobileNetV2 mapped."""
    if isinstance(encoder, MobileNetV2Encoder) and is_torchvision_state(state):
        return official_from_torchvision(state)
    return drop_prefixes(state, ("fc.",))


def load_imagenet_backbone(encoder: nn.Module, backbone: str) -> None:
    """Load torchvision's ImageNet weights for `backbone` (downloaded once into the torch hub cache)."""
    weights = imagenet_weights(backbone)
    if weights is None:
        raise RefineError(f"torchvision has no ImageNet weights for {backbone}", hint="pass --backbone-weights FILE")
    try:
        state = weights.get_state_dict(progress=True, weights_only=True)
    except Exception as exc:  # network errors, proxies, truncated or hash-mismatched downloads
        raise RefineError(
            f"could not download the ImageNet weights for {backbone} from {weights.url}: {short_reason(exc)}",
            hint="download that file elsewhere and pass it with --backbone-weights FILE",
        ) from exc
    load_strict(encoder, encoder_state(encoder, state), f"ImageNet {backbone} weights", _BACKBONE_HINT)


def load_backbone_file(encoder: nn.Module, path: str | Path, what: str) -> None:
    """Load a local backbone state_dict strictly (a torchvision MobileNetV2 file is mapped; `fc.*` ignored)."""
    state = encoder_state(encoder, read_state_dict(path, what))
    load_strict(encoder, state, f"{what} in {Path(path).name}", _BACKBONE_HINT)
