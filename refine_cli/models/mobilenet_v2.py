"""The MobileNetV2 encoder of Light-Weight RefineNet, in the official layout (not torchvision's).

It differs from torchvision's: the t=1 block keeps its 1x1 expansion conv, there is no final 1280
conv, and the module names are `layer1`..`layer8` with `output.{0,1,2}` inside each inverted residual.
Keeping that layout means the official checkpoints' encoder keys load unchanged.
"""

from __future__ import annotations

from torch import Tensor, nn

# (expansion t, output channels c, repeats n, first stride s) for layer2..layer8.
MOBILENET_V2_CONFIG = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> optional ReLU6, as a Sequential so keys read `.0.weight`, `.1.weight`."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise (stride) -> 1x1 linear project, with identity skip when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_skip = stride == 1 and in_channels == out_channels
        self.output = nn.Sequential(
            conv_bn(in_channels, hidden, 1),
            conv_bn(hidden, hidden, 3, stride=stride, groups=hidden),
            conv_bn(hidden, out_channels, 1, act=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.output(x)
        return out + x if self.use_skip else out


class MobileNetV2Encoder(nn.Module):
    """Returns [l3, l4, l5, l6, l7, l8]: strides 4, 8, 16, 16, 32, 32 with 24/32/64/96/160/320 channels.

    These are the six taps the LW decoder fuses (l3 at 1/4 down to l8 at 1/32).
    """

    channels = (24, 32, 64, 96, 160, 320)

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = conv_bn(3, 32, 3, stride=2)
        in_channels = 32
        for index, (t, c, n, s) in enumerate(MOBILENET_V2_CONFIG, start=2):
            blocks = [InvertedResidual(in_channels if i == 0 else c, c, t, s if i == 0 else 1) for i in range(n)]
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
            in_channels = c

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.layer2(self.layer1(x))
        taps = []
        for index in range(3, 9):
            x = getattr(self, f"layer{index}")(x)
            taps.append(x)
        return taps
