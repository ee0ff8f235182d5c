"""Forward shapes (ceil(H/4) x ceil(W/4) on odd sizes), gradients, frozen BatchNorm and the helpers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from refine_cli.models import create_model, freeze_batchnorm_stats, upsample_logits
from refine_cli.models.blocks import logits_size


@pytest.fixture(scope="module")
def lw50():
    torch.manual_seed(0)
    return create_model("lw-refinenet-50", num_classes=3)


def test_logits_size_matches_official_examples() -> None:
    assert logits_size(512, 512) == (128, 128)
    assert logits_size(468, 625) == (117, 157)


@pytest.mark.parametrize(
    "name,size",
    [
        ("lw-refinenet-50", (65, 97)),
        ("lw-refinenet-50", (64, 64)),
        ("lw-refinenet-mobilenetv2", (65, 97)),
        ("lw-refinenet-mobilenetv2", (33, 50)),
        ("refinenet-50", (65, 97)),
        ("refinenet-50-cascade2", (49, 66)),
        ("refinenet-50-single", (49, 66)),
        ("refinenet-50-2scale", (37, 58)),
    ],
)
def test_output_is_quarter_ceil(name: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 3, *logits_size(*size))
    assert torch.isfinite(out).all()


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = create_model("lw-refinenet-mobilenetv2", num_classes=4).train()
    freeze_batchnorm_stats(model)
    image, target = torch.randn(2, 3, 48, 56), torch.randint(0, 4, (2, 48, 56))
    loss = F.cross_entropy(upsample_logits(model(image), (48, 56)), target)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing


def test_full_refinenet_gradients_flow_through_rcus() -> None:
    torch.manual_seed(0)
    model = create_model("refinenet-50-single", num_classes=2).train()
    model(torch.randn(1, 3, 40, 40)).sum().backward()
    block = model.blocks[0]
    for module in (block.lateral[0].rcus[0].conv1, block.out_rcus[2].conv2, block.crp.convs[3], model.encoder.conv1):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0


def test_freeze_batchnorm_stats_keeps_running_stats(lw50) -> None:
    lw50.train()
    freeze_batchnorm_stats(lw50)
    bn = lw50.encoder.bn1
    before = bn.running_mean.clone()
    lw50(torch.randn(2, 3, 40, 40) * 5 + 3).sum().backward()
    assert torch.equal(bn.running_mean, before) and not bn.training
    assert bn.weight.grad is not None and bn.weight.requires_grad
    assert lw50.encoder.dropout.training  # only BatchNorm is switched, dropout still trains
    lw50.zero_grad()


def test_encoder_dropout_only_in_training(lw50) -> None:
    x = torch.randn(1, 3, 40, 40)
    lw50.eval()
    with torch.no_grad():
        assert torch.equal(lw50(x), lw50(x))
        lw50.train()
        torch.manual_seed(1)
        first = lw50(x)
        torch.manual_seed(2)
        assert not torch.allclose(first, lw50(x))


def test_upsample_logits_is_align_corners_false() -> None:
    logits = torch.randn(1, 3, 5, 7)
    out = upsample_logits(logits, (17, 25))
    assert out.shape == (1, 3, 17, 25)
    assert torch.equal(out, F.interpolate(logits, size=(17, 25), mode="bilinear", align_corners=False))
    assert upsample_logits(logits, (5, 7)) is logits


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_forward_matches_cpu() -> None:
    torch.manual_seed(0)
    model = create_model("lw-refinenet-mobilenetv2", num_classes=3).eval()
    x = torch.randn(1, 3, 65, 97)
    with torch.no_grad():
        cpu = model(x)
        gpu = model.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    "name,gmacs", [("lw-refinenet-50", 31.98), ("lw-refinenet-mobilenetv2", 8.58), ("refinenet-50", 243.5)]
)
def test_multiply_adds_match_official_at_512(name: str, gmacs: float) -> None:
    """Conv/linear MACs at 512x512 equal those measured on the official code (docs/models.md)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = create_model(name).eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, 512, 512))
    assert round(counter.get_total_flops() / 2e9, 2) == gmacs
