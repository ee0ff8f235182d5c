"""Light-Weight RefineNet (BMVC 2018) on ResNet-50/101/152 and on the official MobileNetV2.

The decoder is the RefineNet cascade with every 3x3 conv replaced by 1x1, no RCUs and a 4-stage
light-weight CRP; only the classifier stays 3x3. It reuses the generic `RefineNet` model:

- ResNet: blocks on l4 (512 wide), l3, l2, l1 (256 wide), ReLU before each CRP, no head dropout
  (the released code has none before `clf_conv`).
- MobileNetV2: six taps; block 1 sums the 1x1-projected l8 and l7 (1/32), block 2 sums l5, l6 and
  the upsampled block-1 output (1/16), then l4 (1/8) and l3 (1/4). The laterals are projected once
  (`conv3`..`conv8` in the official code), the cascade input has its own 1x1 (`conv_adapt`), and
  the activation is ReLU6.
"""

from __future__ import annotations

from refine_cli.models.backbones import ResNetEncoder
from refine_cli.models.mobilenet_v2 import MobileNetV2Encoder
from refine_cli.models.refinenet import GROUPS, RESNET_LATERAL_WIDTHS, RefineNet
from refine_cli.models.registry import ModelInfo

# Taps of MobileNetV2Encoder are [l3, l4, l5, l6, l7, l8]; block order follows the official forward pass.
MOBILENET_GROUPS = ((5, 4), (2, 3), (1,), (0,))


def build(info: ModelInfo, num_classes: int) -> RefineNet:
    """Registry builder for the `lw-refinenet-*` names."""
    if info.backbone == "mobilenetv2":
        encoder = MobileNetV2Encoder()
        return RefineNet(
            info.name,
            num_classes,
            encoder,
            encoder.channels,
            (256,) * len(encoder.channels),
            MOBILENET_GROUPS,
            lightweight=True,
            relu6=True,
            project_laterals=False,
            head_dropout=0.0,
        )
    depth = int(info.backbone.removeprefix("resnet"))
    return RefineNet(
        info.name,
        num_classes,
        ResNetEncoder(depth),
        ResNetEncoder.channels,
        RESNET_LATERAL_WIDTHS,
        GROUPS["cascade4"],
        lightweight=True,
        head_dropout=0.0,
    )
