"""An independent NumPy transcription of what the MATLAB RefineNet computes, for checking converted models.

Written from MatConvNet's and guosheng/refinenet's MATLAB code, not from refine's PyTorch modules: arrays
stay in MATLAB's H x W x C layout, weights are used as stored (H x W x Cin x Cout, correlation), BatchNorm
uses the stored moments [mean, sigma] (`vl_nnbnorm` with given moments), pools pad with -inf, and the
bicubic resize follows `imresize`'s `contributions` (1-based indices, six taps, the [1:n n:-1:1] mirror).
The network walks the parameter NAMES of the MATLAB release (`p_ims1d2_outl{k}_dimred`,
`adapt_input_path{k}_b{j}_conv`, `mflow_conv_g{k}_...`), so a wrong name map in the converter shows up
as different logits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

Params = Mapping[str, np.ndarray]


# ----------------------------------------------------------------------------- MatConvNet operations
def conv(
    x: np.ndarray, filters: np.ndarray, bias: np.ndarray | None = None, stride: int = 1, pad: int = 0
) -> np.ndarray:
    """`vl_nnconv`: x H x W x Cin, filters kh x kw x Cin x Cout, correlation, zero padding."""
    kh, kw = filters.shape[:2]
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0))).astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(0, 1))  # Ho, Wo, Cin, kh, kw
    windows = windows[::stride, ::stride]
    out = np.tensordot(windows, filters.astype(np.float64).transpose(2, 0, 1, 3), axes=([2, 3, 4], [0, 1, 2]))
    if bias is not None:
        out = out + bias.reshape(-1)
    return out


def bnorm(x: np.ndarray, mult: np.ndarray, bias: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """`vl_nnbnorm` with given moments (C x 2: mean, sigma): mult / sigma * (x - mean) + bias, no epsilon."""
    mean, sigma = moments[:, 0], moments[:, 1]
    return mult.reshape(-1) / sigma * (x - mean) + bias.reshape(-1)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def max_pool(x: np.ndarray, size: int, stride: int, pad: int) -> np.ndarray:
    """`vl_nnpool` max: padded cells never win (-inf)."""
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(0, 1))[::stride, ::stride]
    return windows.max(axis=(3, 4))


# ----------------------------------------------------------------------------- MATLAB imresize (bicubic)
def _cubic(x: np.ndarray) -> np.ndarray:
    absx = np.abs(x)
    absx2, absx3 = absx**2, absx**3
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * (
        (absx > 1) & (absx <= 2)
    )


def contributions(in_length: int, out_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """imresize.m's `contributions` for scale >= 1: (weights, 0-based indices), both out_length x 6."""
    kernel_width = 4.0
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    weights = _cubic(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(1, in_length + 1), np.arange(in_length, 0, -1)])
    indices = aux[np.mod(indices.astype(np.int64) - 1, aux.size)]
    return weights, indices - 1


def imresize(x: np.ndarray, out_size: tuple[int, int], scale: tuple[float, float] | None = None) -> np.ndarray:
    """Bicubic `imresize` of an H x W x C array to `out_size`; `scale` = per-axis factors (default out / in).

    A factor larger than out / in gives the first `out_size` rows/columns of the larger result, which is
    what `my_resize.m` keeps after `imresize(x, s)` on the GPU.
    """
    height, width = x.shape[:2]
    scale = scale or (out_size[0] / height, out_size[1] / width)
    out = x.astype(np.float64)
    for axis, (length, target, factor) in enumerate(zip((height, width), out_size, scale, strict=True)):
        weights, indices = contributions(length, target, factor)
        gathered = np.take(out, indices, axis=axis)  # axis grows to (target, 6)
        shape = [1] * gathered.ndim
        shape[axis], shape[axis + 1] = target, 6
        out = (gathered * weights.reshape(shape)).sum(axis=axis + 1)
    return out


def sum_layer(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """`My_sum_layer`: both maps resized to the element-wise larger size (`my_resize`, GPU rule) and added."""
    target = (max(first.shape[0], second.shape[0]), max(first.shape[1], second.shape[1]))

    def resized(x: np.ndarray) -> np.ndarray:
        if x.shape[:2] == target:
            return x
        factor = max(target[0] / x.shape[0], target[1] / x.shape[1])
        return imresize(x, target, (factor, factor))

    return resized(first) + resized(second)


# ----------------------------------------------------------------------------- the network
def _block_names(stage: int, count: int, letters: bool) -> list[str]:
    if letters:
        return [chr(ord("a") + i) for i in range(count)]
    return ["a"] + [f"b{i}" for i in range(1, count)]


def _bn_branch(x: np.ndarray, params: Params, stage: int, block: str, part: str, stride: int, pad: int) -> np.ndarray:
    """One conv + BatchNorm of a bottleneck: `res{stage}{block}_branch{part}` and `bn{stage}{block}_branch{part}`."""
    out = conv(x, params[f"res{stage}{block}_branch{part}_filter"], stride=stride, pad=pad)
    bn = f"bn{stage}{block}_branch{part}"
    return bnorm(out, params[f"{bn}_mult"], params[f"{bn}_bias"], params[f"{bn}_moments"])


def resnet_stage_outputs(x: np.ndarray, params: Params, blocks: tuple[int, int, int, int]) -> list[np.ndarray]:
    """The Caffe ResNet as MatConvNet imports it (stride in branch2a and branch1, pool1 padded to 1)."""
    letters = blocks == (3, 4, 6, 3)
    y = conv(x, params["conv1_filter"], params.get("conv1_bias"), stride=2, pad=3)
    y = relu(bnorm(y, params["bn_conv1_mult"], params["bn_conv1_bias"], params["bn_conv1_moments"]))
    y = max_pool(y, 3, 2, 1)
    outputs = []
    for stage, count in zip(range(2, 6), blocks, strict=True):
        for index, name in enumerate(_block_names(stage, count, letters)):
            stride = 2 if (index == 0 and stage > 2) else 1
            shortcut = _bn_branch(y, params, stage, name, "1", stride, 0) if index == 0 else y
            z = relu(_bn_branch(y, params, stage, name, "2a", stride, 0))
            z = relu(_bn_branch(z, params, stage, name, "2b", 1, 1))
            y = relu(_bn_branch(z, params, stage, name, "2c", 1, 0) + shortcut)
        outputs.append(y)
    return outputs


def _rcu(x: np.ndarray, params: Params, prefix: str, count: int) -> np.ndarray:
    for j in range(1, count + 1):
        y = conv(relu(x), params[f"{prefix}_b{j}_conv_filter"], params[f"{prefix}_b{j}_conv_bias"], pad=1)
        x = x + conv(relu(y), params[f"{prefix}_b{j}_conv_relu_varout_dimred_filter"], pad=1)
    return x


def _crp(x: np.ndarray, params: Params, prefix: str, stages: int, conv_first: bool) -> np.ndarray:
    x = relu(x)
    total, top = x, x
    for i in range(1, stages + 1):
        if conv_first:
            name = f"{prefix}_poolprev_relu_varout_pb1" if i == 1 else f"{prefix}_pool{i - 1}_outvar_pb{i}"
            top = max_pool(conv(top, params[f"{name}_filter"], pad=1), 5, 1, 2)
        else:
            top = conv(max_pool(top, 5, 1, 2), params[f"{prefix}_pool{i}_outvar_dimred_filter"], pad=1)
        total = total + top
    return total


def refinenet_scores(
    image: np.ndarray,
    params: Params,
    filters: np.ndarray,
    biases: np.ndarray,
    *,
    blocks: tuple[int, int, int, int],
    adapt_prefix: str,
    crp_stages: int,
    conv_first: bool,
    input_scale: float = 1.2,
) -> np.ndarray:
    """Class scores (H' x W' x K, void channel included) of an H x W x 3 RGB image with values 0..255."""
    height, width = image.shape[:2]
    scaled = (int(math.floor(height * input_scale + 0.5)), int(math.floor(width * input_scale + 0.5)))
    x = image.astype(np.float64) if scaled == (height, width) else imresize(image, scaled)
    x = x - 128.0
    outl = resnet_stage_outputs(x, params, blocks)[::-1]  # outl1 = res5 ... outl4 = res2
    tag = f"p_ims{input_scale:.1f}".replace(".", "d")
    previous = None
    for k in range(1, 5):
        lateral = conv(outl[k - 1], params[f"{tag}_outl{k}_dimred_filter"], pad=1)
        lateral = _rcu(lateral, params, f"{adapt_prefix}{k}", 2)
        if previous is None:
            fused = lateral
        else:
            top = conv(previous, params[f"mflow_conv_g{k - 1}_b3_joint_varout_dimred_filter"], pad=1)
            side = conv(lateral, params[f"{adapt_prefix}{k}_b2_joint_varout_dimred_filter"], pad=1)
            fused = sum_layer(top, side)
        pooled = _crp(fused, params, f"mflow_conv_g{k}", crp_stages, conv_first)
        previous = _rcu(pooled, params, f"mflow_conv_g{k}", 3)
    return conv(previous, filters, biases, pad=1)
