"""Turn a trained model into a fast inference model: BN folding, channels_last, autocast, torch.compile.

Folding a BatchNorm into the convolution that feeds it removes one full pass over every activation map
at inference time and is exact up to float rounding. We find conv/BN pairs structurally (consecutive
children of a Sequential; sibling attributes `convK`/`bnK`, `conv`/`bn`) and, because a structural
guess can be wrong for an unusual module, `fold_batchnorm(..., verify=True)` compares outputs with the
unfolded model and refuses a fold that changes them.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from refine_cli.errors import RefineError

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_BN_TYPES = (nn.BatchNorm2d, nn.SyncBatchNorm)


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and isinstance(bn, _BN_TYPES)
        and bn.track_running_stats
        and bn.running_mean is not None
        and conv.out_channels == bn.num_features
    )


def _pairs(module: nn.Module) -> Iterator[tuple[str, str]]:
    """Names of (conv, bn) children of `module` where the BN directly consumes the conv's output."""
    names = list(module._modules)
    if isinstance(module, nn.Sequential):
        yield from zip(names, names[1:], strict=False)
        return
    for name in names:
        match = re.fullmatch(r"(.*)conv(\d*)", name)
        if match:
            yield name, f"{match.group(1)}bn{match.group(2)}"


def fold_batchnorm(model: nn.Module, verify: bool = True, size: int = 64) -> int:
    """Fold every eval-mode BatchNorm that directly follows a Conv2d into it, in place; return the count.

    With `verify`, the folded model's output on a random `size` x `size` input must match the original
    within 1e-3 relative (fp32); otherwise the model is left unchanged and RefineError is raised.
    """
    model.eval()
    reference = copy.deepcopy(model) if verify and any(isinstance(m, _BN_TYPES) for m in model.modules()) else None
    replaced: list[tuple[nn.Module, str, nn.Module, str, nn.Module]] = []
    for module in list(model.modules()):
        for conv_name, bn_name in list(_pairs(module)):
            conv, bn = module._modules.get(conv_name), module._modules.get(bn_name)
            if conv is None or bn is None or not _foldable(conv, bn):
                continue
            module._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
            module._modules[bn_name] = nn.Identity()
            replaced.append((module, conv_name, conv, bn_name, bn))
    if reference is not None and replaced:
        error = _relative_error(reference, model, size)
        if not error <= 1e-3:
            for module, conv_name, conv, bn_name, bn in replaced:  # undo: leave the caller's model as it was
                module._modules[conv_name], module._modules[bn_name] = conv, bn
            raise RefineError(
                f"folding BatchNorm changed the output of {type(model).__name__} (relative error {error:.2e})",
                hint="refine bench can skip folding with --no-fold-bn; please report this model",
            )
    return len(replaced)


def check_finite_weights(model: nn.Module) -> None:
    """Refuse NaN/inf weights up front: every prediction would be garbage, and no inference flag can help."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    bad = [name for name, tensor in tensors if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise RefineError(
            f"the checkpoint has non-finite weights (NaN or inf in {len(bad)} tensor(s), e.g. {bad[0]})",
            hint="the training run diverged: retrain (lower --lr, --grad-clip) or use another checkpoint",
        )


@torch.no_grad()
def _relative_error(reference: nn.Module, candidate: nn.Module, size: int) -> float:
    device = next(reference.parameters()).device
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, size, size, generator=generator).to(device)
    expected, actual = reference(x).float(), candidate(x).float()
    return ((expected - actual).norm() / expected.norm().clamp_min(1e-12)).item()


def check_precision_name(precision: str) -> None:
    """Refuse a precision refine does not know (before any device- or file-specific refusal)."""
    if precision not in PRECISIONS:
        raise RefineError(f"unknown precision {precision!r}", hint="use one of: " + ", ".join(PRECISIONS))


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse combinations that cannot be measured honestly, with the alternative in the hint."""
    check_precision_name(precision)
    if device.type == "cpu" and precision == "fp16":
        raise RefineError("fp16 is not supported on the CPU", hint="use --precision bf16 or fp32 on the CPU")
    if device.type == "cpu" and precision == "tf32":
        raise RefineError("tf32 is a CUDA tensor-core mode", hint="use --precision fp32 or bf16 on the CPU")


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """torch.autocast for bf16/fp16, a no-op for fp32/tf32."""
    if precision in _AUTOCAST_DTYPES:
        return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])
    return contextlib.nullcontext()


def precision_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Everything `--precision` means around one PyTorch forward: autocast, and TF32 on or strictly off on CUDA.

    fp32 is strict IEEE on CUDA too (PyTorch's default lets cuDNN use TF32), so fp32 runs on any device
    give the same labels up to summation order.
    """
    stack = contextlib.ExitStack()
    if device.type == "cuda":
        stack.enter_context(tf32_mode(precision == "tf32"))
    stack.enter_context(autocast_context(precision, device))
    return stack


def slow_precision_warning(precision: str, device: torch.device) -> str | None:
    """Why a precision that is valid here will still be slow: bf16 on a CPU without bf16 instructions."""
    if precision != "bf16" or device.type != "cpu":
        return None
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return None
    return (
        "this CPU has no bf16 instructions (AVX512-BF16 or AMX): bf16 is emulated and likely slower than fp32; "
        "use --precision fp32"
    )


def _has_new_tf32_api() -> bool:
    return hasattr(torch.backends.cudnn, "conv") and hasattr(torch.backends.cudnn.conv, "fp32_precision")


def tf32_flags() -> dict[str, object]:
    """The TF32 switches as torch sees them now (recorded with every CUDA benchmark)."""
    if _has_new_tf32_api():
        return {
            "cudnn_conv_fp32_precision": torch.backends.cudnn.conv.fp32_precision,
            "cuda_matmul_fp32_precision": torch.backends.cuda.matmul.fp32_precision,
        }
    return {
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }


@contextlib.contextmanager
def tf32_mode(enabled: bool) -> Iterator[None]:
    """Set TF32 for cuDNN convs and CUDA matmuls for the duration of the block, then restore."""
    if _has_new_tf32_api():
        conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
        saved = (conv.fp32_precision, matmul.fp32_precision)
        value = "tf32" if enabled else "ieee"
        conv.fp32_precision, matmul.fp32_precision = value, value
        try:
            yield
        finally:
            conv.fp32_precision, matmul.fp32_precision = saved
    else:
        saved_flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved_flags


def compile_for_inference(model: nn.Module, mode: str = "default") -> nn.Module:
    """torch.compile for a model whose weights never change again (bench, eval, predict; never training).

    Inductor's "freezing" treats the weights as constants: it folds them into the graph and pre-packs
    them for oneDNN instead of reordering them on every call (`refine bench --compile` and
    tools/bench_side_by_side.py measure it; labels are unchanged). It sets a process-wide inductor
    option, so training code must not call it.
    """
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    return torch.compile(model, mode=mode)


def preferred_memory_format(device: torch.device | str) -> torch.memory_format:
    """channels_last on the CPU, PyTorch's default layout elsewhere.

    PyTorch's CPU kernels for these models, the max-pools of every chained residual pooling block
    first, are several times faster on NHWC tensors (tools/bench_cpu_levers.py --configs after,nchw
    measures it; docs/benchmarks.md). On CUDA the layout is left to the user (`refine bench
    --channels-last` measures it).
    """
    return torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format


def prepare_for_inference(
    model: nn.Module,
    device: torch.device,
    *,
    fold_bn: bool = True,
    channels_last: bool = False,
) -> tuple[nn.Module, int]:
    """eval(), fold BN (verified on the CPU in fp32), move to `device`, optionally channels_last.

    Returns the model and the number of folded BatchNorms. Precision is applied with
    `autocast_context` around the forward, so the weights stay fp32 as in training.
    """
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    check_finite_weights(model)
    folded = fold_batchnorm(model, verify=True) if fold_bn else 0
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model, folded
