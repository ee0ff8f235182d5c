"""The RefineNet building blocks, shared by the original and the Light-Weight family.

One `RefineBlock` covers every block of every variant: the original RefineNet uses 3x3 convs, two
RCUs per input path and three output RCUs; Light-Weight RefineNet uses 1x1 convs and no RCUs. The
official code spells the same structure as flat attributes (`p_ims1d2_outl1_dimred`, ...); the key
map in `official.py` translates between the two.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refine_cli.models.registry import CRP_ORDERS, RESIZE_MODES


def conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = False) -> nn.Conv2d:
    """A stride-1 'same' convolution; RefineNet decoders use only these (3x3 or 1x1)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


def resize_like(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize with align_corners=True, as every official decoder does between levels.

    Resizing to the exact skip size (rather than x2) keeps odd input sizes working.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def resize_map(x: Tensor, size: Sequence[int], mode: str = "bilinear") -> Tensor:
    """Bring a coarser map to `size` between levels: `resize_like` (the PyTorch codes), or MATLAB's bicubic
    `imresize` by one factor and a top-left crop, as the MatConvNet RefineNet's `My_sum_layer` does.
    """
    if mode == "matlab-bicubic":
        from refine_cli.models.matlab_resize import matlab_resize

        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return matlab_resize(x, size, by_factor=True)
    return resize_like(x, size)


class ResidualConvUnit(nn.Module):
    """RCU: ReLU -> 3x3 conv (bias) -> ReLU -> 3x3 conv (no bias) -> + input (released-code layout)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv(channels, channels, 3, bias=True)
        self.conv2 = conv(channels, channels, 3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out))
        return out + x


def _running_max(x: Tensor, dim: int) -> Tensor:
    """Max over a window of 5 centred on each position along `dim`, clipped at the borders.

    Clipping the window is the same as -inf padding. Four in-place maxima of shifted views: no
    padded copy and no index buffer, only one output the size of `x`.
    """
    out = x.clone()
    length = x.shape[dim]
    for shift in (1, 2):
        if shift >= length:
            break
        head = out.narrow(dim, 0, length - shift)
        torch.maximum(head, x.narrow(dim, shift, length - shift), out=head)
        tail = out.narrow(dim, shift, length - shift)
        torch.maximum(tail, x.narrow(dim, 0, length - shift), out=tail)
    return out


def separable_max_pool5(x: Tensor) -> Tensor:
    """`max_pool2d(x, 5, stride=1, padding=2)` as a 1x5 then a 5x1 running max.

    A 5x5 max is the max of the five row maxima, so the result equals the pooled one for every
    value (NaN included); only the sign of a zero maximum may differ (-0.0 == 0.0). On the CPU it
    beats ATen's pool (tools/bench_cpu_levers.py, docs/benchmarks.md "CPU levers"), which runs a slow NCHW
    kernel and, in channels_last, fills an unused int64 index buffer twice the size of the activation.
    """
    return _running_max(_running_max(x, x.dim() - 1), x.dim() - 2)


def _padded_max5(x: Tensor, dim: int) -> Tensor:
    """The same window max as `_running_max`, out of place: -inf padding and the max of five shifted views.

    Under torch.compile inductor fuses this into one loop per direction, which is faster than both
    its own lowering of the 5x5 pool and the in-place form.
    """
    length = x.shape[dim]
    pad = [0, 0] * (x.dim() - 1 - dim) + [2, 2]
    padded = F.pad(x, pad, value=float("-inf"))
    out = padded.narrow(dim, 0, length)
    for shift in range(1, 5):
        out = torch.maximum(out, padded.narrow(dim, shift, length))
    return out


def padded_max_pool5(x: Tensor) -> Tensor:
    """`separable_max_pool5` out of place, for torch.compile (same results, see `_padded_max5`)."""
    return _padded_max5(_padded_max5(x, x.dim() - 1), x.dim() - 2)


class MaxPool5x5(nn.Module):
    """The CRP's 5x5 stride-1 max-pool; parameter-free, so checkpoints are unaffected.

    CPU inference uses `separable_max_pool5`, or its out-of-place form under torch.compile; autograd
    (the in-place maxima record no gradient and would split it between tied inputs), CUDA (one
    cuDNN kernel is faster there), tracing and ONNX export use the standard operator.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or (torch.is_grad_enabled() and x.requires_grad) or _exporting():
            return F.max_pool2d(x, kernel_size=5, stride=1, padding=2)
        if torch.compiler.is_compiling():
            return padded_max_pool5(x)
        return separable_max_pool5(x)


def _exporting() -> bool:
    """True while a graph is exported (jit trace, ONNX export): keep the standard operator for the file."""
    onnx = sys.modules.get("torch.onnx")  # not imported yet = not exporting (and no 20 ms lazy import)
    return torch.jit.is_tracing() or (onnx is not None and onnx.is_in_onnx_export())


class ChainedResidualPool(nn.Module):
    """CRP: a chain of [5x5 max-pool stride 1 -> conv] stages, each output added to the input.

    Pool-before-conv (`order="pool-conv"`) as in the VOC/Cityscapes models and both PyTorch codes;
    `order="conv-pool"` is the "improved" chain of the MATLAB release (`gen_network_pool_block.m`,
    conv then pool in every stage), which its NYUD, Person-Part, Context, SUN-RGBD and ADE models use.
    The chain captures context from ever larger windows at full resolution; the preceding ReLU lives in
    `RefineBlock`. Both orders have the same weights, so only the option tells them apart.
    """

    def __init__(self, channels: int, stages: int = 4, kernel_size: int = 3, order: str = "pool-conv") -> None:
        super().__init__()
        if order not in CRP_ORDERS:
            raise ValueError(f"CRP order must be one of {CRP_ORDERS}, not {order!r}")
        self.pool = MaxPool5x5()
        self.convs = nn.ModuleList(conv(channels, channels, kernel_size) for _ in range(stages))
        self.conv_first = order == "conv-pool"

    def forward(self, x: Tensor) -> Tensor:
        top = x
        for stage in self.convs:
            top = self.pool(stage(top)) if self.conv_first else stage(self.pool(top))
            x = x + top
        return x


class MultiResolutionFusion(nn.Module):
    """Project every input to a common width, upsample to the finest input and sum.

    `project[i] = False` passes input i through unchanged (LW MobileNetV2 projects its lateral maps
    earlier). Each projection runs at its input's own resolution, before upsampling, exactly like the
    official code, which saves compute and keeps imported weights numerically identical.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        kernel_size: int,
        project: Sequence[bool] | None = None,
        resize: str = "bilinear",
    ) -> None:
        super().__init__()
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize mode must be one of {RESIZE_MODES}, not {resize!r}")
        self.resize = resize
        project = [True] * len(in_channels) if project is None else list(project)
        if len(project) != len(in_channels):
            raise ValueError("project needs one flag per input")
        convs: list[nn.Module] = []
        for channels, proj in zip(in_channels, project, strict=True):
            if not proj and channels != out_channels:
                raise ValueError(f"an unprojected input must already have {out_channels} channels, not {channels}")
            convs.append(conv(channels, out_channels, kernel_size) if proj else nn.Identity())
        self.convs = nn.ModuleList(convs)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        projected = [module(x) for module, x in zip(self.convs, inputs, strict=True)]
        size = max((p.shape[-2:] for p in projected), key=lambda s: s[0] * s[1])
        out = resize_map(projected[0], size, self.resize)
        for p in projected[1:]:
            out = out + resize_map(p, size, self.resize)
        return out


class AdaptivePath(nn.Module):
    """One lateral input of a block: a conv to the path width (`dimred`) followed by RCUs."""

    def __init__(self, in_channels: int, width: int, kernel_size: int, rcus: int) -> None:
        super().__init__()
        self.dimred = conv(in_channels, width, kernel_size)
        self.rcus = nn.Sequential(*(ResidualConvUnit(width) for _ in range(rcus)))

    def forward(self, x: Tensor) -> Tensor:
        return self.rcus(self.dimred(x))


class RefineBlock(nn.Module):
    """A RefineNet block: adapt lateral encoder maps, fuse them with the coarser block's output,
    pool context (CRP) and refine (output RCUs).

    Inputs are `laterals` (encoder maps, each with its own path) and an optional `cascade` map
    (the previous block's output, which gets no RCUs, as in the released code). With a single input
    there is no fusion conv: the map passes straight to the ReLU and the CRP.
    """

    def __init__(
        self,
        lateral_channels: Sequence[int],
        lateral_widths: Sequence[int],
        cascade_channels: int | None,
        width: int,
        *,
        kernel_size: int = 3,
        adapt_rcus: int = 2,
        output_rcus: int = 3,
        crp_stages: int = 4,
        crp_order: str = "pool-conv",
        project_laterals: bool = True,
        relu6: bool = False,
        resize: str = "bilinear",
    ) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(
            AdaptivePath(c, w, kernel_size, adapt_rcus) for c, w in zip(lateral_channels, lateral_widths, strict=True)
        )
        fused_in = list(lateral_widths) + ([cascade_channels] if cascade_channels is not None else [])
        if len(fused_in) > 1:
            project = [project_laterals] * len(lateral_widths) + [True] * (cascade_channels is not None)
            self.fuse: MultiResolutionFusion | None = MultiResolutionFusion(
                fused_in, width, kernel_size, project, resize
            )
        else:
            if fused_in[0] != width:
                raise ValueError("a single-input block keeps its input width")
            self.fuse = None
        self.act: nn.Module = nn.ReLU6() if relu6 else nn.ReLU()
        self.crp = ChainedResidualPool(width, crp_stages, kernel_size, crp_order)
        self.out_rcus = nn.Sequential(*(ResidualConvUnit(width) for _ in range(output_rcus)))
        self.out_channels = width

    def forward(self, laterals: Sequence[Tensor], cascade: Tensor | None = None) -> Tensor:
        maps = [path(x) for path, x in zip(self.lateral, laterals, strict=True)]
        if cascade is not None:
            maps.append(cascade)
        x = self.fuse(maps) if self.fuse is not None else maps[0]
        return self.out_rcus(self.crp(self.act(x)))


class SegmentationModel(nn.Module):
    """Common surface of every model: `num_classes`, `model_name`, and encoder/decoder parameter groups.

    Subclasses put their pretrained backbone(s) under `self.encoder`; everything else is decoder,
    which the trainer gives 10x the encoder's learning rate.
    """

    encoder: nn.Module

    def __init__(self, model_name: str, num_classes: int) -> None:
        super().__init__()
        self.model_name = model_name
        self.num_classes = num_classes

    def backbones(self) -> list[nn.Module]:
        """The trunks that ImageNet (or local) backbone weights initialise."""
        return [self.encoder]

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the (ImageNet-initialised) backbone."""
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        """All parameters not in the encoder: the RefineNet decoder and the classifier."""
        encoder_ids = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in encoder_ids]


def logits_size(height: int, width: int) -> tuple[int, int]:
    """The logits size every model produces: ceil(H/4) x ceil(W/4), as three 'same' stride-2 ops give."""
    return ((height + 3) // 4, (width + 3) // 4)  # not -(-h // 4): ONNX exports that as a truncating division


__all__ = [
    "AdaptivePath",
    "ChainedResidualPool",
    "MaxPool5x5",
    "MultiResolutionFusion",
    "RefineBlock",
    "ResidualConvUnit",
    "SegmentationModel",
    "conv",
    "logits_size",
    "resize_like",
    "resize_map",
    "separable_max_pool5",
]
