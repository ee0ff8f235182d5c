"""An independent transcription of the official architectures, with the official module names.

Written from docs/models.md and the official key listings, deliberately without using
anything from refine_cli.models (not even torchvision's ResNet), so that equivalence tests compare
two separate implementations: DrSleep's LW ResNet, LW MobileNetV2 and refinenet-pytorch's RefineNet.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def _k3(cin: int, cout: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1, bias=bias)


def _k1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, 1, 0, bias=False)


def _up(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=True)


class Bottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(y + skip)


class CRPBlock(nn.Module):
    """Attributes `{i}_outvar_dimred`; the official code wraps it in a Sequential (hence `_pool.0.`)."""

    def __init__(self, channels: int, conv_fn) -> None:
        super().__init__()
        for i in range(1, 5):
            setattr(self, f"{i}_outvar_dimred", conv_fn(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        top = x
        for i in range(1, 5):
            top = getattr(self, f"{i}_outvar_dimred")(F.max_pool2d(top, 5, 1, 2))
            x = top + x
        return x


class RCUBlock(nn.Module):
    """refinenet-pytorch's RCUBlock: `{j}_conv` (bias) and `{j}_conv_relu_varout_dimred` per unit."""

    def __init__(self, channels: int, units: int) -> None:
        super().__init__()
        self.units = units
        for j in range(1, units + 1):
            setattr(self, f"{j}_conv", _k3(channels, channels, bias=True))
            setattr(self, f"{j}_conv_relu_varout_dimred", _k3(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        for j in range(1, self.units + 1):
            y = getattr(self, f"{j}_conv")(F.relu(x))
            y = getattr(self, f"{j}_conv_relu_varout_dimred")(F.relu(y))
            x = y + x
        return x


class OfficialResNetRefine(nn.Module):
    """LW-RefineNet (`full=False`, DrSleep ResNetLW) or RefineNet (`full=True`, refinenet-pytorch)."""

    def __init__(self, depth: int, num_classes: int, full: bool) -> None:
        super().__init__()
        self.full = full
        cv = _k3 if full else _k1
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for index, (n, planes) in enumerate(zip(RESNET_BLOCKS[depth], (64, 128, 256, 512), strict=True), start=1):
            stride = 1 if index == 1 else 2
            blocks = []
            for b in range(n):
                blocks.append(Bottleneck(cin, planes, stride if b == 0 else 1))
                cin = planes * 4
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
        for k, (c_in, width) in enumerate(((2048, 512), (1024, 256), (512, 256), (256, 256)), start=1):
            setattr(self, f"p_ims1d2_outl{k}_dimred", cv(c_in, width))
            if full:
                setattr(self, f"adapt_stage{k}_b", nn.Sequential(RCUBlock(width, 2)))
            if k > 1:
                setattr(self, f"adapt_stage{k}_b2_joint_varout_dimred", cv(256, 256))
            setattr(self, f"mflow_conv_g{k}_pool", nn.Sequential(CRPBlock(width, cv)))
            if full:
                setattr(self, f"mflow_conv_g{k}_b", nn.Sequential(RCUBlock(width, 3)))
            if k < 4:
                setattr(self, f"mflow_conv_g{k}_b3_joint_varout_dimred", cv(width, 256))
        self.clf_conv = nn.Conv2d(256, num_classes, 3, 1, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        feats = []
        for index in range(1, 5):
            x = getattr(self, f"layer{index}")(x)
            feats.append(x)
        top = None
        for k in range(1, 5):
            skip = feats[4 - k]
            y = getattr(self, f"p_ims1d2_outl{k}_dimred")(skip)
            if self.full:
                y = getattr(self, f"adapt_stage{k}_b")(y)
            if top is not None:
                y = getattr(self, f"adapt_stage{k}_b2_joint_varout_dimred")(y) + _up(top, skip)
            y = getattr(self, f"mflow_conv_g{k}_pool")(F.relu(y))
            if self.full:
                y = getattr(self, f"mflow_conv_g{k}_b")(y)
            top = getattr(self, f"mflow_conv_g{k}_b3_joint_varout_dimred")(y) if k < 4 else y
        return self.clf_conv(top)


def _cbr(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    mods: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        mods.append(nn.ReLU6())
    return nn.Sequential(*mods)


class InvertedResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, t: int, stride: int) -> None:
        super().__init__()
        mid = cin * t
        self.skip = cin == cout and stride == 1
        self.output = nn.Sequential(_cbr(cin, mid, 1), _cbr(mid, mid, 3, stride, mid), _cbr(mid, cout, 1, act=False))

    def forward(self, x: Tensor) -> Tensor:
        y = self.output(x)
        return y + x if self.skip else y


class OfficialMobileNetLW(nn.Module):
    """DrSleep's MBv2 LW-RefineNet: layer1..layer8, conv3..conv8, crp1..4, conv_adapt2..4, segm."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.layer1 = _cbr(3, 32, 3, 2)
        cin = 32
        cfg = (
            (1, 16, 1, 1),
            (6, 24, 2, 2),
            (6, 32, 3, 2),
            (6, 64, 4, 2),
            (6, 96, 3, 1),
            (6, 160, 3, 2),
            (6, 320, 1, 1),
        )
        for index, (t, c, n, s) in enumerate(cfg, start=2):
            blocks = []
            for b in range(n):
                blocks.append(InvertedResidualBlock(cin, c, t, s if b == 0 else 1))
                cin = c
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
        for index, c in zip((8, 7, 6, 5, 4, 3), (320, 160, 96, 64, 32, 24), strict=True):
            setattr(self, f"conv{index}", _k1(c, 256))
        for index in (4, 3, 2, 1):
            setattr(self, f"crp{index}", nn.Sequential(CRPBlock(256, _k1)))
        for index in (4, 3, 2):
            setattr(self, f"conv_adapt{index}", _k1(256, 256))
        self.segm = nn.Conv2d(256, num_classes, 3, 1, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer2(self.layer1(x))
        l3 = self.layer3(x)
        l4 = self.layer4(l3)
        l5 = self.layer5(l4)
        l6 = self.layer6(l5)
        l7 = self.layer7(l6)
        l8 = self.layer8(l7)
        y = self.conv_adapt4(self.crp4(F.relu6(self.conv8(l8) + self.conv7(l7))))
        y = self.conv_adapt3(self.crp3(F.relu6(self.conv5(l5) + self.conv6(l6) + _up(y, l6))))
        y = self.conv_adapt2(self.crp2(F.relu6(self.conv4(l4) + _up(y, l4))))
        y = self.crp1(F.relu6(self.conv3(l3) + _up(y, l3)))
        return self.segm(y)
