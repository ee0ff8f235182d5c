"""TTA: single scale equals plain upsample+softmax, flip is consistent, tiles cover the image."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from refine_cli.cli._inference_opts import DEFAULT_MSC, resolve_tta
from refine_cli.cli._options import fill_optional_values
from refine_cli.engine.infer.tta import (
    DEFAULT_MSC_SCALES,
    parse_scales,
    predict_batch_probs,
    predict_probs,
    softmax_channels,
    tile_windows,
)
from refine_cli.errors import RefineError


class _QuarterNet(nn.Module):
    """Logits at 1/4 resolution like the RefineNet family; position-dependent so flips matter."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, classes, 5, padding=2)
        self.pool = nn.AvgPool2d(4, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


def test_single_scale_equals_plain_upsampled_softmax() -> None:
    model = _QuarterNet().eval()
    image = torch.randn(1, 3, 45, 61)
    probs = predict_probs(model, image)
    expected = torch.softmax(F.interpolate(model(image), size=(45, 61), mode="bilinear", align_corners=False), 1)[0]
    assert probs.shape == (4, 45, 61)
    assert torch.allclose(probs, expected, atol=1e-6)
    assert torch.equal(probs.argmax(0), expected.argmax(0))
    assert torch.allclose(probs.sum(0), torch.ones(45, 61), atol=1e-5)


def test_softmax_channels_matches_torch_softmax_in_both_layouts() -> None:
    logits = torch.randn(2, 21, 33, 47) * 8
    expected = torch.softmax(logits, 1)
    for layout in (torch.contiguous_format, torch.channels_last):
        probs = softmax_channels(logits.contiguous(memory_format=layout))
        assert probs.shape == expected.shape and torch.allclose(probs, expected, atol=1e-6)
        assert torch.equal(probs.argmax(1), expected.argmax(1))


def test_labels_only_skips_the_softmax_for_a_single_view_and_keeps_the_labels() -> None:
    model = _QuarterNet().eval()
    images = torch.randn(2, 3, 45, 61)
    probs = predict_batch_probs(model, images)
    for scales in ((1.0,), (0.75,)):
        scores = predict_batch_probs(model, images, scales=scales, labels_only=True)
        size = (round(45 * scales[0]), round(61 * scales[0]))
        scaled = images if scales[0] == 1 else F.interpolate(images, size=size, mode="bilinear")
        logits = F.interpolate(model(scaled), size=(45, 61), mode="bilinear")
        assert torch.allclose(scores, logits, atol=1e-5)  # logits: no softmax was paid for
        reference = predict_batch_probs(model, images, scales=scales)
        assert torch.equal(scores.argmax(1), reference.argmax(1))
    assert not torch.allclose(predict_batch_probs(model, images, labels_only=True).sum(1), torch.ones(2, 45, 61))
    # several views are averaged as probabilities whatever the caller wants
    views = predict_batch_probs(model, images, scales=(0.75, 1.0), flip=True, labels_only=True)
    assert torch.allclose(views.sum(1), torch.ones(2, 45, 61), atol=1e-5)
    assert torch.allclose(probs, predict_batch_probs(model, images, labels_only=False))


def test_flip_tta_is_flip_consistent_and_batch_matches_single() -> None:
    model = _QuarterNet().eval()
    image = torch.randn(1, 3, 32, 48)
    probs = predict_probs(model, image, flip=True)
    probs_of_mirror = predict_probs(model, image.flip(-1), flip=True)
    assert torch.allclose(probs, probs_of_mirror.flip(-1), atol=1e-5)
    no_flip = predict_probs(model, image)
    assert not torch.allclose(probs, no_flip, atol=1e-3)  # the mirrored view really contributed
    pair = torch.cat([image, image.flip(-1)])
    batch = predict_batch_probs(model, pair, scales=(0.75, 1.0), flip=True)
    assert torch.allclose(batch[0], predict_probs(model, image, scales=(0.75, 1.0), flip=True), atol=1e-5)


def test_multi_scale_is_mean_of_single_scales() -> None:
    model = _QuarterNet().eval()
    image = torch.randn(1, 3, 40, 40)
    parts = [predict_probs(model, image, scales=(s,)) for s in (0.5, 1.0, 1.5)]
    assert torch.allclose(predict_probs(model, image, scales=(0.5, 1.0, 1.5)), sum(parts) / 3, atol=1e-6)


@pytest.mark.parametrize("size", [(50, 70), (16, 100), (33, 33)])
def test_tile_windows_cover_every_pixel(size: tuple[int, int]) -> None:
    height, width = size
    windows = tile_windows(height, width, (24, 32))
    cover = torch.zeros(height, width)
    for top, left, h, w in windows:
        assert top + h <= height and left + w <= width
        cover[top : top + h, left : left + w] += 1
    assert bool((cover >= 1).all())


def test_tiled_prediction_matches_whole_for_a_pointwise_model_and_sums_to_one() -> None:
    pointwise = nn.Conv2d(3, 3, 1).eval()  # no context: tiling must not change anything
    image = torch.randn(1, 3, 50, 70)
    whole = predict_probs(pointwise, image)
    tiled = predict_probs(pointwise, image, tile=(24, 32))
    assert torch.allclose(whole, tiled, atol=1e-5)
    probs = predict_probs(_QuarterNet().eval(), image, scales=(1.0, 1.25), flip=True, tile=(32, 32))
    assert probs.shape == (4, 50, 70) and torch.allclose(probs.sum(0), torch.ones(50, 70), atol=1e-4)


def test_parsers() -> None:
    assert parse_scales("0.5,0.75,1,1.25,1.5") == DEFAULT_MSC_SCALES
    assert parse_scales(None) == (1.0,)
    assert resolve_tta(None, "512x1024")[1] == (512, 1024) and resolve_tta(None, "300")[1] == (300, 300)
    assert resolve_tta(None, None) == ((1.0,), None)
    for bad in ("a,b", "0,1", "-1"):
        with pytest.raises(RefineError):
            parse_scales(bad)
    for bad in ("axb", "8x8", "1x2x3"):
        with pytest.raises(RefineError, match="--tile"):
            resolve_tta(None, bad)


def test_msc_alone_means_the_tta_modules_default_scales() -> None:
    """`--msc` with no value (or `--msc=`) is DEFAULT_MSC_SCALES of the TTA module: one source for the default."""
    assert resolve_tta("", None)[0] == DEFAULT_MSC_SCALES
    filled = fill_optional_values(["eval", "--msc", "--flip"])
    assert filled == ["eval", "--msc", DEFAULT_MSC, "--flip"]
    assert resolve_tta(filled[2], None)[0] == DEFAULT_MSC_SCALES


def test_an_image_over_the_pixel_budget_goes_through_the_model_in_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """A huge image (a tiny PNG can decode to 81 Mpixel) never reaches the model whole: memory follows the tile."""
    import numpy as np

    from refine_cli.engine.infer import loop

    monkeypatch.setattr(loop, "AUTO_TILE_PIXELS", 40 * 40)
    monkeypatch.setattr(loop, "AUTO_TILE", (32, 32))
    seen: list[tuple[int, int]] = []
    model = _QuarterNet().eval()
    model.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    rng = np.random.default_rng(0)
    notes: list[str] = []
    big, small = rng.integers(0, 255, (70, 90, 3), dtype=np.uint8), rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    results = list(loop.run_inference(model, [("big", big), ("small", small)], notify=notes.append))
    assert [r.label.shape for r in results] == [(70, 90), (30, 40)]
    assert max(h * w for h, w in seen[:-1]) <= 32 * 32 and seen[-1] == (30, 40)  # small images stay whole
    assert len(notes) == 1 and "90x70" in notes[0] and "32x32 tiles" in notes[0]
    seen.clear()  # brought down to a working short side of 28 first, the same image fits whole: no tiles
    config = loop.InferenceConfig(short_side=(1, 28))
    results = list(loop.run_inference(model, [("big", big)], config, notify=notes.append))
    assert results[0].label.shape == (70, 90) and seen == [(28, 36)] and len(notes) == 1
