"""The CRP's separable 5x5 max-pool gives nn.MaxPool2d(5, 1, 2)'s result, and is used only where it should be."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from refine_cli.models.blocks import ChainedResidualPool, MaxPool5x5, padded_max_pool5, separable_max_pool5

REFERENCE = nn.MaxPool2d(kernel_size=5, stride=1, padding=2)


def _bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32)


FAST_POOLS = [separable_max_pool5, padded_max_pool5]  # eager CPU inference, and its torch.compile form


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 4, 1, 7), (1, 5, 2, 3), (2, 6, 9, 13), (1, 8, 33, 17)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("pool", FAST_POOLS)
def test_bitwise_equal_to_max_pool(shape: tuple[int, ...], channels_last: bool, pool) -> None:  # noqa: ANN001
    generator = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=generator) * 10 - 3  # mostly negative, no exact zeros
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    got = pool(x)
    want = REFERENCE(x)
    assert got.shape == want.shape
    assert torch.equal(_bits(got), _bits(want))
    if pool is separable_max_pool5:
        assert got.stride() == want.stride()  # same layout as the pool gives: the next conv stays fast


@pytest.mark.parametrize("pool", FAST_POOLS)
def test_borders_act_as_minus_infinity_padding_and_nan_propagates(pool) -> None:  # noqa: ANN001
    x = torch.full((1, 1, 6, 7), -1e30)
    x[0, 0, 0, 0] = -5.0  # a corner maximum reaches exactly 3x3 positions
    x[0, 0, 0, 6] = float("-inf")
    x[0, 0, 5, 6] = float("nan")  # spreads to the 3x3 bottom-right corner only
    got, want = pool(x), REFERENCE(x)
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(want))
    assert int((got == -5.0).sum()) == 9 and int(got.isnan().sum()) == 9


def test_ties_and_integer_valued_inputs_compare_equal() -> None:
    x = torch.randint(-3, 3, (2, 3, 11, 10)).float()  # many ties, zeros of both signs may appear
    assert torch.equal(separable_max_pool5(x), REFERENCE(x))


def test_module_uses_the_fast_path_only_without_autograd() -> None:
    pool = MaxPool5x5()
    x = torch.randn(1, 2, 8, 8, requires_grad=True)
    out = pool(x)  # training: the standard operator, with its gradient (one winner per window)
    out.sum().backward()
    reference_input = x.detach().clone().requires_grad_(True)
    REFERENCE(reference_input).sum().backward()
    assert torch.equal(x.grad, reference_input.grad)
    with torch.inference_mode():
        assert torch.equal(pool(x.detach()), REFERENCE(x.detach()))


def test_crp_has_no_pool_parameters_or_buffers() -> None:
    crp = ChainedResidualPool(4, stages=2, kernel_size=1)
    assert sorted(crp.state_dict()) == ["convs.0.weight", "convs.1.weight"]


def test_tracing_keeps_the_standard_operator() -> None:
    with torch.no_grad():  # no autograd, yet a captured graph must hold the exportable pool
        traced = torch.jit.trace(MaxPool5x5(), torch.randn(1, 2, 8, 8))
    graph = str(traced.graph)
    assert "max_pool2d" in graph and "maximum" not in graph


def test_torch_compile_captures_the_out_of_place_form_and_matches() -> None:
    """Under torch.compile on the CPU (inference) the pool is the padded shift-and-max that inductor fuses."""
    captured: list[str] = []

    def backend(graph_module: torch.fx.GraphModule, _inputs: list) -> object:
        captured.extend(str(node.target) for node in graph_module.graph.nodes)
        return graph_module.forward

    x = torch.randn(1, 3, 9, 11).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = torch.compile(MaxPool5x5(), backend=backend, fullgraph=True)(x)
    assert torch.equal(got, REFERENCE(x))
    assert any("maximum" in target for target in captured) and not any("max_pool2d" in t for t in captured)
