"""Benchmark engine: statistics, argument checks, MAC counts and the inference optimisations (CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from refine_cli.cli._options import parse_size
from refine_cli.devices import resolve_device
from refine_cli.engine.bench.benchmark import BenchSettings, latency_stats, time_steps, validate
from refine_cli.engine.bench.complexity import count_macs, measure
from refine_cli.engine.infer.model_prep import autocast_context, check_precision, fold_batchnorm, prepare_for_inference
from refine_cli.errors import RefineError
from refine_cli.models import create_model
from refine_cli.models.peers import create_peer

CPU = torch.device("cpu")


def test_latency_stats_match_numpy_conventions() -> None:
    times = [5.0, 1.0, 3.0, 2.0, 4.0]
    stats = latency_stats(times)
    assert stats["mean"] == 3.0 and stats["min"] == 1.0 and stats["max"] == 5.0
    assert math.isclose(stats["std"], math.sqrt(2.5))  # sample std (n - 1)
    assert stats["p50"] == 3.0 and math.isclose(stats["p90"], 4.6) and math.isclose(stats["p99"], 4.96)
    with pytest.raises(ValueError):
        latency_stats([1.0])


@pytest.mark.parametrize(("text", "expected"), [("512", (512, 512)), ("468x625", (468, 625)), (" 64X96 ", (64, 96))])
def test_parse_size(text: str, expected: tuple[int, int]) -> None:
    assert parse_size(text, "--size") == expected


@pytest.mark.parametrize("text", ["512x", "0", "abc", "x512", "-64", "16", "64x64x3"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(RefineError, match="--size"):
        parse_size(text, "--size")


def test_device_and_settings_checks() -> None:
    assert resolve_device("cpu") == CPU
    with pytest.raises(RefineError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RefineError, match="CUDA is not available"):
            resolve_device("cuda")
        assert resolve_device("auto") == CPU
    for bad in (BenchSettings(iters=1), BenchSettings(warmup=-1), BenchSettings(batch=0), BenchSettings(threads=0)):
        with pytest.raises(RefineError):
            validate(bad, CPU)
    with pytest.raises(RefineError) as refused:
        check_precision("fp16", CPU)
    assert "bf16" in refused.value.hint
    with pytest.raises(RefineError):
        check_precision("int8", CPU)
    validate(BenchSettings(iters=2, warmup=0, precision="bf16"), CPU)


def test_time_steps_counts_every_iteration() -> None:
    calls = []
    times = time_steps(lambda: calls.append(1), 4, CPU)
    assert len(times) == 4 and len(calls) == 4 and all(t >= 0 for t in times)


def test_conv_macs_formula() -> None:
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=True)
    assert count_macs(torch.nn.Sequential(conv), 56, 56, in_channels=64) == 56 * 56 * 64 * 64 * 9
    grouped = torch.nn.Conv2d(32, 64, 3, stride=2, padding=1, groups=4)
    assert count_macs(torch.nn.Sequential(grouped), 32, 32, in_channels=32) == 16 * 16 * 64 * 8 * 9
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
    assert count_macs(linear, 4, 4) == 48 * 10


@pytest.mark.parametrize(
    ("name", "params", "gmacs"), [("lw-refinenet-50", 27_357_525, 31.98), ("lw-refinenet-mobilenetv2", 3_284_565, 8.58)]
)
def test_published_params_and_gmacs(name: str, params: int, gmacs: float) -> None:
    cost = measure(lambda: create_model(name, num_classes=21), 512, 512)
    assert cost.params == params
    assert cost.gmacs == pytest.approx(gmacs, rel=0.005)


def test_meta_count_equals_real_count() -> None:
    real_model = create_peer("tv:lraspp_mobilenet_v3_large")
    real = count_macs(real_model, 96, 128)
    meta = measure(lambda: create_peer("tv:lraspp_mobilenet_v3_large"), 96, 128)
    assert meta.macs == real and meta.params == sum(p.numel() for p in real_model.parameters())


def _randomise_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BN statistics, so a wrong fold cannot pass by accident."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize(
    "build",
    [lambda: create_model("lw-refinenet-mobilenetv2", 5), lambda: create_peer("tv:lraspp_mobilenet_v3_large", 5)],
)
def test_optimised_model_matches_plain_model(build) -> None:
    torch.manual_seed(0)
    plain = _randomise_bn(build())
    optimised = _randomise_bn(build())
    optimised.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        expected = plain(x)
    optimised, folded = prepare_for_inference(optimised, CPU, fold_bn=True)
    assert folded > 10
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in optimised.modules())
    with torch.inference_mode():
        assert _relative(optimised(x), expected) < 1e-4
        optimised.to(memory_format=torch.channels_last)
        assert _relative(optimised(x.contiguous(memory_format=torch.channels_last)), expected) < 1e-4
        with autocast_context("bf16", CPU):
            low = optimised(x)
    assert low.dtype == torch.bfloat16
    assert _relative(low, expected) < 0.1


def test_wrong_fold_is_refused_and_undone() -> None:
    class Misnamed(torch.nn.Module):  # `bn` is applied BEFORE `conv`, so folding it would be wrong
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.bn(x))

    model = _randomise_bn(Misnamed())
    with pytest.raises(RefineError) as refused:
        fold_batchnorm(model)
    assert "--no-fold-bn" in refused.value.hint
    assert isinstance(model.bn, torch.nn.BatchNorm2d)
