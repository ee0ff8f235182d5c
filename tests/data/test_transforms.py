"""The LW-RefineNet training augmentation: geometry, padding values, determinism, label safety."""

from __future__ import annotations

import numpy as np
import pytest

from refine_cli.data.load.transforms import MEAN_RGB_UINT8, TrainTransform


def _pair(height: int = 40, width: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    label = rng.integers(0, 5, (height, width), dtype=np.uint8)
    return image, label


def test_output_is_crop_sized_uint8_and_contiguous() -> None:
    image, label = _pair()
    transform = TrainTransform(crop=32, min_short_side=None)
    for seed in range(10):
        out_image, out_label = transform(image, label, np.random.default_rng(seed))
        assert out_image.shape == (32, 32, 3) and out_label.shape == (32, 32)
        assert out_image.dtype == np.uint8 and out_label.dtype == np.uint8
        assert out_image.flags["C_CONTIGUOUS"] and out_label.flags["C_CONTIGUOUS"]


def test_padding_uses_mean_colour_and_ignore_label() -> None:
    image, label = _pair(20, 30)
    transform = TrainTransform(crop=64, scale_min=1.0, scale_max=1.0, min_short_side=None, hflip=False)
    out_image, out_label = transform(image, label, np.random.default_rng(0))
    # the 20x30 sample sits in the middle (symmetric padding); everything else is padding
    assert (out_label[:22] == 255).all() and (out_label[42:] == 255).all()
    assert (out_image[0, 0] == MEAN_RGB_UINT8).all() and MEAN_RGB_UINT8 == (124, 116, 104)
    np.testing.assert_array_equal(out_label[22:42, 17:47], label)
    np.testing.assert_array_equal(out_image[22:42, 17:47], image)


def test_labels_are_never_interpolated() -> None:
    image, label = _pair()
    label = np.where(label > 2, 7, 1).astype(np.uint8)  # only values 1 and 7
    transform = TrainTransform(crop=48, scale_min=0.5, scale_max=2.0, min_short_side=None)
    for seed in range(20):
        _, out = transform(image, label, np.random.default_rng(seed))
        assert set(np.unique(out).tolist()) <= {1, 7, 255}


def test_min_short_side_raises_the_scale() -> None:
    transform = TrainTransform(crop=16, scale_min=0.5, scale_max=0.6, min_short_side=350)
    for seed in range(5):
        scale = transform.sample_scale((375, 500), np.random.default_rng(seed))
        assert scale == pytest.approx(350 / 375)
    assert 0.5 <= TrainTransform(crop=16, min_short_side=None).sample_scale((375, 500), np.random.default_rng(1)) <= 2


def test_scale_range_is_the_lw_recipe_and_covered() -> None:
    transform = TrainTransform(crop=16, min_short_side=None)
    scales = [transform.sample_scale((100, 100), np.random.default_rng(s)) for s in range(200)]
    assert 0.5 <= min(scales) < 0.7 and 1.8 < max(scales) <= 2.0


def test_same_rng_seed_same_result_and_flip_happens() -> None:
    image, label = _pair()
    transform = TrainTransform(crop=24, scale_min=1.0, scale_max=1.0, min_short_side=None)
    a = transform(image, label, np.random.default_rng(5))
    b = transform(image, label, np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # with scale 1 and a crop equal to the input, the output is the input or its mirror
    full = TrainTransform(crop=40, scale_min=1.0, scale_max=1.0, min_short_side=None)
    square_image, square_label = image[:, :40], label[:, :40]
    outcomes = set()
    for seed in range(16):
        _, out = full(square_image, square_label, np.random.default_rng(seed))
        if np.array_equal(out, square_label):
            outcomes.add("same")
        elif np.array_equal(out, square_label[:, ::-1]):
            outcomes.add("flipped")
    assert outcomes == {"same", "flipped"}


def test_image_and_label_stay_aligned() -> None:
    # encode the label into the image's red channel: after any augmentation they must still agree
    rng = np.random.default_rng(3)
    label = np.kron(rng.integers(0, 4, (4, 5)), np.ones((20, 20))).astype(np.uint8)
    image = np.stack([label * 60, label * 0, label * 0], axis=-1).astype(np.uint8)
    transform = TrainTransform(crop=40, scale_min=0.7, scale_max=1.6, min_short_side=None)
    for seed in range(10):
        out_image, out_label = transform(image, label, np.random.default_rng(seed))
        valid = out_label != 255
        decoded = np.rint(out_image[..., 0][valid] / 60.0)
        assert (decoded == out_label[valid]).mean() > 0.95  # bilinear blends only block edges


def test_mismatched_sizes_are_refused() -> None:
    image, label = _pair()
    with pytest.raises(ValueError, match="differ in size"):
        TrainTransform(crop=8)(image, label[:10], np.random.default_rng(0))


def test_max_short_side_works_large_images_at_that_size() -> None:
    """A photo larger than the working size is scaled as if its short side were `max_short_side`."""
    rng = np.random.default_rng(0)
    fixed = TrainTransform(crop=32, scale_min=1.0, scale_max=1.0, min_short_side=None, max_short_side=64)
    assert fixed.sample_scale((256, 384), rng) == pytest.approx(0.25)
    assert fixed.sample_scale((384, 256), rng) == pytest.approx(0.25)  # the short side, portrait too
    assert fixed.sample_scale((48, 64), rng) == 1.0  # smaller images keep their own size
    ranged = TrainTransform(crop=32, min_short_side=40, max_short_side=64)
    scales = [ranged.sample_scale((640, 800), rng) * 640 for _ in range(200)]
    assert min(scales) >= 40 - 1e-6 and max(scales) <= 128 + 1e-6 and max(scales) > 100  # U(0.5, 2) x 64, >= 40
