"""MATLAB's `imresize(x, ..., 'bicubic')` for upscaling, in PyTorch: the resize the MatConvNet RefineNet used.

The original RefineNet sums its cascade inputs in `My_sum_layer.m`, which resizes the coarser map with
`my_resize.m`: on the GPU `imresize(x, s)` with one factor s = max(target ./ size) and a top-left crop to
the target, on the CPU `imresize(x, target, 'bicubic')` (one factor per axis); the demos run on the GPU.
The image itself enters the network resized x1.2 by `imresize(img, round(size * 1.2))`. Its kernel is
Keys' cubic with a = -0.5 (OpenCV and PyTorch use -0.75), the source coordinate of output pixel o is
(o + 0.5) / s - 0.5, the weights are normalised to sum 1, and indices outside the map are mirrored
including the edge pixel (-1 -> 0, -2 -> 1). Without these details a converted model would compute
different numbers than the one its weights were trained in.

Only upscaling is modelled (s >= 1): MATLAB widens the kernel when it shrinks (antialiasing), which the
network never does. The resize is two matrix products with (out x in) interpolation matrices built from
the sizes with tensor operations only, so it runs on any device and exports to ONNX with symbolic sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

CUBIC_A = -0.5  # MATLAB's cubic kernel (Keys 1981); OpenCV and PyTorch use -0.75


def cubic(distance: Tensor) -> Tensor:
    """Keys' cubic convolution kernel with a = -0.5, as MATLAB's `imresize` defines it."""
    x = distance.abs()
    x2, x3 = x * x, x * x * x
    near = (CUBIC_A + 2) * x3 - (CUBIC_A + 3) * x2 + 1
    far = CUBIC_A * x3 - 5 * CUBIC_A * x2 + 8 * CUBIC_A * x - 4 * CUBIC_A
    return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def interpolation_matrix(in_len: int, out_len: int, scale: Tensor, device: torch.device) -> Tensor:
    """The (out_len x in_len) matrix of MATLAB's bicubic upscaling by `scale` along one axis.

    Row o holds the four weights of the source pixels around (o + 0.5) / scale - 0.5, normalised to sum 1;
    a source index outside [0, in_len) is mirrored back with the edge pixel repeated (MATLAB's
    `[1:n, n:-1:1]` rule), so two taps can land on one pixel and add up.
    """
    positions = torch.arange(out_len, device=device, dtype=torch.float64)
    source = (positions + 0.5) / scale - 0.5
    offsets = torch.arange(4, device=device, dtype=torch.float64) - 1
    taps = torch.floor(source).unsqueeze(1) + offsets  # (out, 4): floor-1 .. floor+2
    weights = cubic(source.unsqueeze(1) - taps)
    weights = weights / weights.sum(dim=1, keepdim=True)
    columns = torch.arange(in_len, device=device, dtype=torch.int64)
    length = columns[-1:] + 1  # in_len as a tensor: sizes may be symbolic while exporting
    folded = torch.remainder(taps.to(torch.int64), 2 * length)
    index = torch.where(folded < length, folded, 2 * length - 1 - folded)
    one_hot = (index.unsqueeze(2) == columns).to(weights.dtype)  # (out, 4, in)
    return (weights.unsqueeze(2) * one_hot).sum(dim=1)


def _scale_tensor(numerator: int, denominator: int, device: torch.device) -> Tensor:
    """numerator / denominator as a float64 tensor, as MATLAB computes it (sizes may be symbolic while exporting)."""
    ones = torch.ones((), device=device, dtype=torch.float64)
    return (ones * numerator) / (ones * denominator)


def matlab_resize(x: Tensor, size: Sequence[int], by_factor: bool = False) -> Tensor:
    """Upscale (N, C, H, W) maps to `size` as MATLAB's bicubic `imresize` does.

    `by_factor=False`: one factor per axis, out / in (`imresize(x, size, 'bicubic')`, the image's x1.2).
    `by_factor=True`: one factor for both axes, the larger of the two ratios, then the top-left `size`
    kept (`my_resize.m` on the GPU: `imresize(x, s)` and a crop), as in the cascade's sums.
    """
    height, width = x.shape[-2], x.shape[-1]
    out_h, out_w = size[0], size[1]
    if (height, width) == (out_h, out_w):
        return x
    scale_h = _scale_tensor(out_h, height, x.device)
    scale_w = _scale_tensor(out_w, width, x.device)
    if by_factor:
        scale_h = scale_w = torch.maximum(scale_h, scale_w)
    rows = interpolation_matrix(height, out_h, scale_h, x.device).to(x.dtype)
    cols = interpolation_matrix(width, out_w, scale_w, x.device).to(x.dtype)
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


__all__ = ["CUBIC_A", "cubic", "interpolation_matrix", "matlab_resize"]
