"""The MobileNetV2 encoder of Light-Weight RefineNet, in the official layout (not torchvision's).

It differs from torchvision's: the t=1 block keeps its 1x1 expansion conv, there is no final 1280
conv, and the module names are `layer1`..`layer8` with `output.{0,1,2}` inside each inverted residual.
Keeping that layout means the official checkpoints' encoder keys load unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

STEM_CHANNELS = 32  # layer1's output: the t=1 block's input and hidden width
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
        self.layer1 = conv_bn(3, STEM_CHANNELS, 3, stride=2)
        in_channels = STEM_CHANNELS
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


# torchvision's mobilenet_v2 `features` index of each official block: features.0 is layer1, features.1
# the t=1 block (layer2.0), then the inverted residuals in order; features.18 (the 1x1 to 1280) and the
# classifier have no place in the encoder.
def _torchvision_blocks() -> list[str]:
    names = []
    for index, (_, _, repeats, _) in enumerate(MOBILENET_V2_CONFIG, start=2):
        names += [f"layer{index}.{i}" for i in range(repeats)]
    return names


def is_torchvision_state(state: dict[str, Tensor]) -> bool:
    """True for a torchvision `mobilenet_v2` state_dict (keys `features.N...`), not the official layout."""
    return any(key.startswith("features.") for key in state) and not any(key.startswith("layer1.") for key in state)


def _official_name(key: str, blocks: dict[str, str]) -> str:
    """features.0.* -> layer1.*; features.N.conv.P.* -> the official block's output.Q.* (else unchanged)."""
    if key.startswith("features.0."):
        return "layer1." + key[len("features.0.") :]
    prefix = key[: key.find(".conv.") + len(".conv.")] if ".conv." in key else ""
    if prefix not in blocks:
        return key
    position, _, rest = key[len(prefix) :].partition(".")
    # t=1: [dw conv+bn+relu6, project conv, project bn]; t=6: [expand conv+bn+relu6, dw ..., conv, bn]
    layers = _T1_LAYERS if prefix == "features.1.conv." else _T6_LAYERS
    if not position.isdigit() or int(position) >= len(layers):
        return key
    return f"{blocks[prefix]}.{layers[int(position)]}{rest}"


_T1_LAYERS = ("output.1.", "output.2.0.", "output.2.1.")
_T6_LAYERS = ("output.0.", "output.1.", "output.2.0.", "output.2.1.")


def official_from_torchvision(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision's mobilenet_v2 weights in the official LW layout, computing exactly what torchvision does.

    Every torchvision layer has one official counterpart (renamed). The official t=1 block has one layer
    more, a 1x1 expansion conv 32->32 + BN + ReLU6 before its depthwise conv; it is set to the identity:
    an identity conv, BN with weight 1, bias 0, mean 0 and variance 1 - eps (so x / sqrt(var + eps) is
    x / 1), and ReLU6 of its input, which is already a ReLU6 output in [0, 6]. Keys that are not part
    of the encoder (features.18, classifier.*) are dropped.
    """
    renamed: dict[str, Tensor] = {}
    blocks = {f"features.{number}.conv.": block for number, block in enumerate(_torchvision_blocks(), start=1)}
    for key, value in state.items():
        if key.startswith(("features.18.", "classifier.")):
            continue
        renamed[_official_name(key, blocks)] = value  # a key of another network keeps its name: load names it
    channels = STEM_CHANNELS
    eps = nn.BatchNorm2d(channels).eps
    identity = {
        "0.weight": torch.eye(channels).view(channels, channels, 1, 1),
        "1.weight": torch.ones(channels),
        "1.bias": torch.zeros(channels),
        "1.running_mean": torch.zeros(channels),
        "1.running_var": torch.full((channels,), 1.0 - eps),
        "1.num_batches_tracked": torch.tensor(0),
    }
    renamed.update({f"layer2.0.output.0.{key}": value for key, value in identity.items()})
    return renamed
