"""RefineNet (CVPR 2017): the 4-cascade model of the released code and the paper's section 4.3 variants.

All variants share one generic model, `RefineNet`: an encoder yields feature maps ("taps"), and a
list of `groups` says which taps each RefineNet block takes, from the coarsest block to the finest;
each block after the first also takes the previous block's output (the cascade). So:

- 4-cascade (`refinenet-N`): groups [l4], [l3], [l2], [l1], i.e. the released code exactly.
- 2-cascade (`-cascade2`): RefineNet-2 fuses {l4, l3} at 1/16, RefineNet-1 fuses {l2, l1} plus
  RefineNet-2's output at 1/4.
- single (`-single`): one block fuses l4, l3, l2, l1 at 1/4.
- 2-scale (`-2scale`): two independent ResNets see the image scaled x1.2 and x0.6; block k fuses the
  same-level maps of both (each with its own adaptive path) plus block k-1's output, at the finer
  (x1.2) resolution. The logits, at 1/4 of the x1.2 image, are resized to 1/4 of the input size.

Lateral widths follow the code: l4 is reduced to 512 channels, the others to 256; each fused block
works at the smallest width among its inputs (the paper's rule), so the top block of the 4-cascade is
512 wide and the rest 256.

The architecture options of the registry (`registry.ARCHITECTURE_OPTIONS`) describe the MATLAB release
that `refine convert --from matconvnet` imports: Caffe-style strides, the conv-before-pool CRP, its
number of CRP stages, MATLAB's bicubic resize between levels and the image's internal x1.2 scale.
Their defaults are the PyTorch port's architecture.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import torch.nn.functional as F
from torch import Tensor, nn

from refine_cli.errors import RefineError
from refine_cli.models.backbones import ResNetEncoder
from refine_cli.models.blocks import RefineBlock, SegmentationModel, conv
from refine_cli.models.registry import ModelInfo

RESNET_LATERAL_WIDTHS = (256, 256, 256, 512)
GROUPS = {
    "cascade4": ((3,), (2,), (1,), (0,)),
    "cascade2": ((3, 2), (1, 0)),
    "single": ((3, 2, 1, 0),),
}


class TwoScaleResNet(nn.Module):
    """Two independent ResNet trunks on the image rescaled x1.2 (`large`) and x0.6 (`small`).

    Returns, per level l1..l4, the pair [large, small] so a block can fuse the same level of both.
    """

    scales = (1.2, 0.6)
    scale_tenths = (12, 6)  # the same scales as integers, so the resize sizes stay exportable (ONNX)

    def __init__(self, depth: int, caffe_stride: bool = False) -> None:
        super().__init__()
        self.large = ResNetEncoder(depth, caffe_stride=caffe_stride)
        self.small = ResNetEncoder(depth, caffe_stride=caffe_stride)

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        height, width = x.shape[-2:]
        outputs = []
        for trunk, tenths in zip((self.large, self.small), self.scale_tenths, strict=True):
            # round(side * tenths / 10) in integer arithmetic (no ties: side * tenths is even), which
            # torch.export can trace with symbolic sizes where Python's round() of a float cannot
            size = (max(1, (height * tenths + 5) // 10), max(1, (width * tenths + 5) // 10))
            outputs.append(trunk(F.interpolate(x, size=size, mode="bilinear", align_corners=False)))
        return [list(level) for level in zip(*outputs, strict=True)]


class RefineNet(SegmentationModel):
    """A cascade of RefineBlocks over encoder taps, then (dropout and) a 3x3 classifier.

    `encoder(x)` returns one tensor per tap, or (multi-scale) one list of tensors per tap.
    `tap_channels`/`tap_widths` give each tap's channels and its adapted width. Light-Weight
    RefineNet is the same structure with `lightweight=True` (1x1 convs, no RCUs).
    """

    def __init__(
        self,
        model_name: str,
        num_classes: int,
        encoder: nn.Module,
        tap_channels: Sequence[int],
        tap_widths: Sequence[int],
        groups: Sequence[Sequence[int]],
        *,
        scales: int = 1,
        lightweight: bool = False,
        relu6: bool = False,
        project_laterals: bool = True,
        head_dropout: float = 0.5,
        crp_order: str = "pool-conv",
        crp_stages: int = 4,
        resize_mode: str = "bilinear",
        input_scale: float = 1.0,
    ) -> None:
        super().__init__(model_name, num_classes)
        self.encoder = encoder
        self.groups = tuple(tuple(g) for g in groups)
        self.multiscale = scales > 1
        self.resize_mode = resize_mode
        self.input_scale = Fraction(input_scale).limit_denominator(1000)
        blocks = []
        cascade = None
        for group in self.groups:
            lateral_channels = [tap_channels[t] for t in group for _ in range(scales)]
            lateral_widths = [tap_widths[t] for t in group for _ in range(scales)]
            width = min(lateral_widths + ([cascade] if cascade is not None else []))
            blocks.append(
                RefineBlock(
                    lateral_channels,
                    lateral_widths,
                    cascade,
                    width,
                    kernel_size=1 if lightweight else 3,
                    adapt_rcus=0 if lightweight else 2,
                    output_rcus=0 if lightweight else 3,
                    crp_stages=crp_stages,
                    crp_order=crp_order,
                    project_laterals=project_laterals,
                    relu6=relu6,
                    resize=resize_mode,
                )
            )
            cascade = width
        self.blocks = nn.ModuleList(blocks)
        self.head_dropout = nn.Dropout(head_dropout) if head_dropout > 0 else nn.Identity()
        self.classifier = conv(cascade, num_classes, 3, bias=True)

    def backbones(self) -> list[nn.Module]:
        """The trunks that ImageNet weights initialise (two for the 2-scale model)."""
        if isinstance(self.encoder, TwoScaleResNet):
            return [self.encoder.large, self.encoder.small]
        return [self.encoder]

    def scale_input(self, x: Tensor) -> Tensor:
        """The image resized by `input_scale` (MATLAB: `imresize(img, round(size * 1.2))`), or `x` at scale 1.

        Sizes are rounded half up in integer arithmetic, so they stay exportable with symbolic sizes.
        """
        if self.input_scale == 1:
            return x
        num, den = self.input_scale.numerator, self.input_scale.denominator
        size = [max(1, (side * 2 * num + den) // (2 * den)) for side in x.shape[-2:]]
        if self.resize_mode == "matlab-bicubic":
            from refine_cli.models.matlab_resize import matlab_resize

            return matlab_resize(x, size)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        """Logits at 1/4 of the input; with `input_scale` at 1/4 of the scaled input (one resize less later)."""
        if self.input_scale != 1:
            x = self.scale_input(x)
        taps = self.encoder(x)
        if not self.multiscale:
            taps = [[t] for t in taps]
        out = None
        for group, block in zip(self.groups, self.blocks, strict=True):
            out = block([t for index in group for t in taps[index]], out)
        logits = self.classifier(self.head_dropout(out))
        # = logits_size(H, W), written with positive floor divisions: ONNX's integer Div truncates, so the
        # exported -(-H // 4) gives floor(H/4) (one row short at odd sizes); (H + 3) // 4 is exact in both
        target = ((x.shape[-2] + 3) // 4, (x.shape[-1] + 3) // 4)
        if tuple(logits.shape[-2:]) != target:  # only the 2-scale model: its finest map is 1/4 of x1.2
            logits = F.interpolate(logits, size=target, mode="bilinear", align_corners=False)
        return logits


def build(info: ModelInfo, num_classes: int, caffe_stride: bool = False, **options: object) -> RefineNet:
    """Registry builder for the `refinenet-*` names; `options` are checked architecture options."""
    depth = int(info.backbone.removeprefix("resnet"))
    if info.variant == "2scale":
        if not math.isclose(float(options.get("input_scale", 1.0)), 1.0):  # type: ignore[arg-type]
            raise RefineError(
                f"{info.name} scales the image itself (x1.2 and x0.6): input_scale does not apply",
                hint="drop input_scale, or use a single-scale refinenet-* model",
            )
        encoder: nn.Module = TwoScaleResNet(depth, caffe_stride=caffe_stride)
        groups, scales = GROUPS["cascade4"], 2
    else:
        encoder, groups, scales = ResNetEncoder(depth, caffe_stride=caffe_stride), GROUPS[info.variant], 1
    return RefineNet(
        info.name,
        num_classes,
        encoder,
        ResNetEncoder.channels,
        RESNET_LATERAL_WIDTHS,
        groups,
        scales=scales,
        **options,  # type: ignore[arg-type]
    )
