"""Narrow RefineNets for tests that need a whole ResNet-RefineNet but not its 100 million parameters.

Every layer, name and operation stays (ResNet depth, block counts, the four cascade levels, the 1x1/3x3
layout, output channels 256..2048); only widths shrink: torchvision's `width_per_group=8` makes the
bottlenecks 8x thinner and the RefineNet paths are 32/16 channels wide instead of 512/256. A converted
MatConvNet file for such a model is a few MB, so the importer's tests can run every naming and CRP
variant and a whole convert -> predict -> eval -> export round in seconds.
"""

from __future__ import annotations

import pytest

NARROW_LATERAL_WIDTHS = (16, 16, 16, 32)
RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def use_narrow_refinenet(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on (until the test ends) `create_model("refinenet-N")` builds the narrow version."""
    import torchvision.models as tvm
    from torchvision.models.resnet import Bottleneck, ResNet

    from refine_cli.models import refinenet

    for depth, blocks in RESNET_BLOCKS.items():

        def narrow(weights: object = None, _blocks: tuple[int, ...] = blocks) -> ResNet:
            assert weights is None, "narrow test ResNets have no pretrained weights"
            return ResNet(Bottleneck, list(_blocks), width_per_group=8)

        monkeypatch.setattr(tvm, f"resnet{depth}", narrow)
    monkeypatch.setattr(refinenet, "RESNET_LATERAL_WIDTHS", NARROW_LATERAL_WIDTHS)
