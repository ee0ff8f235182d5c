"""Dense CRF: refines labels along image edges; degenerate inputs never crash."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pydensecrf.densecrf", reason="pydensecrf2 (the 'crf' extra) is not installed")

from refine_cli.engine.infer.crf import CRFParams, CRFPool, dense_crf  # noqa: E402
from refine_cli.errors import RefineError  # noqa: E402


def _step_problem() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image with a vertical step edge at x=20; probabilities whose boundary is misplaced at x=26."""
    height, width = 32, 48
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, 20:] = 255
    truth = np.zeros((height, width), dtype=np.int64)
    truth[:, 20:] = 1
    probs = np.empty((2, height, width), dtype=np.float32)
    probs[1] = np.where(np.arange(width) >= 26, 0.65, 0.35)[None, :]
    probs[0] = 1 - probs[1]
    return image, probs, truth


def test_crf_moves_labels_to_the_image_edge() -> None:
    image, probs, truth = _step_problem()
    before = probs.argmax(0)
    refined = dense_crf(image, probs, CRFParams(bi_xy_std=20.0, bi_rgb_std=10.0))
    after = refined.argmax(0)
    assert refined.shape == probs.shape and np.allclose(refined.sum(0), 1, atol=1e-4)
    changed = before != after
    assert changed.any() and (np.nonzero(changed)[1] >= 18).all() and (np.nonzero(changed)[1] <= 27).all()
    assert (after == truth).mean() > (before == truth).mean()


def test_degenerate_inputs_do_not_crash() -> None:
    one_pixel = dense_crf(np.zeros((1, 1, 3), np.uint8), np.array([[[0.3]], [[0.7]]], np.float32))
    assert one_pixel.shape == (2, 1, 1)
    single_class = dense_crf(np.zeros((8, 8, 3), np.uint8), np.ones((1, 8, 8), np.float32))
    assert np.allclose(single_class, 1)
    zero_probs = dense_crf(np.zeros((8, 8, 3), np.uint8), np.zeros((3, 8, 8), np.float32))
    assert np.isfinite(zero_probs).all()


def test_params_are_validated() -> None:
    with pytest.raises(RefineError):
        CRFParams(bi_xy_std=0)
    with pytest.raises(RefineError):
        CRFParams(iterations=-1)


def test_pool_keeps_order_inline_and_in_processes() -> None:
    image, probs, _ = _step_problem()
    inputs = [(image, probs), (image[:, ::-1].copy(), probs[:, :, ::-1].copy())]
    expected = [dense_crf(i, p).argmax(0) for i, p in inputs]
    for workers in (1, 2):
        with CRFPool(CRFParams(), workers=workers) as pool:
            results = list(pool.map_ordered(range(2), lambda k: inputs[k]))
        assert [k for k, _ in results] == [0, 1]
        assert all(np.array_equal(r, e) for (_, r), e in zip(results, expected, strict=True))
