"""Fully connected CRF post-processing (Kraehenbuehl & Koltun) through pydensecrf2, an optional extra.

pydensecrf is single-threaded C++, so images are refined in parallel worker *processes*
(`CRFPool`). This module imports only NumPy at load time (no torch), so spawned workers start fast.
Defaults are DeepLab-v2's VOC parameters as most PyTorch code uses them (docs/evaluation.md 3.3):
bilateral w=4, theta_alpha=67, theta_beta=3; Gaussian w=3, theta_gamma=1; 10 mean-field iterations.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np

from refine_cli.errors import RefineError
from refine_cli.workers import die_with_parent, pool_size

T = TypeVar("T")

_INSTALL_HINT = "install the extra with: pip install 'refine-cli[crf]' (needs a C++ compiler)"


# Upper bounds far beyond any useful setting: they only stop absurd or overflowing values.
MAX_ITERATIONS = 1000
MAX_WEIGHT = 1e4
MAX_STD = 1e5


@dataclass(frozen=True)
class CRFParams:
    """Dense CRF parameters in DeepLab notation (w = Potts weight, theta = kernel std-dev in px / intensity)."""

    iterations: int = 10
    bi_w: float = 4.0  # appearance (bilateral) kernel weight
    bi_xy_std: float = 67.0  # theta_alpha: spatial std-dev of the bilateral kernel, pixels
    bi_rgb_std: float = 3.0  # theta_beta: colour std-dev of the bilateral kernel
    pos_w: float = 3.0  # smoothness (Gaussian) kernel weight
    pos_xy_std: float = 1.0  # theta_gamma: spatial std-dev of the smoothness kernel, pixels
    prob_clip: float = 1e-5  # probabilities are clipped here before -log (avoids infinite unaries)

    def __post_init__(self) -> None:
        # `not low <= value <= high` is also true for NaN, so NaN and infinity are refused with the rest
        if isinstance(self.iterations, bool) or not 0 <= self.iterations <= MAX_ITERATIONS:
            raise RefineError(f"CRF iterations must be 0..{MAX_ITERATIONS}, got {self.iterations}")
        for name in ("bi_w", "pos_w"):
            if not 0 <= getattr(self, name) <= MAX_WEIGHT:
                raise RefineError(f"CRF {name} must be a number in [0, {MAX_WEIGHT:g}], got {getattr(self, name)}")
        for name in ("bi_xy_std", "bi_rgb_std", "pos_xy_std"):
            if not 0 < getattr(self, name) <= MAX_STD:
                raise RefineError(f"CRF {name} must be a number in (0, {MAX_STD:g}], got {getattr(self, name)}")
        if not 0 < self.prob_clip < 1:
            raise RefineError(f"CRF prob_clip must be in (0, 1), got {self.prob_clip}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The pydensecrf README / Kraehenbuehl demo set: stronger, longer-range smoothing.
DEMO_PARAMS = CRFParams(iterations=5, bi_w=10.0, bi_xy_std=80.0, bi_rgb_std=13.0, pos_w=3.0, pos_xy_std=3.0)


def _densecrf() -> Any:
    try:
        import pydensecrf.densecrf as densecrf
    except ImportError as error:
        raise RefineError(
            f"dense CRF needs pydensecrf2, which is not importable ({error})", hint=_INSTALL_HINT
        ) from None
    return densecrf


def check_available() -> None:
    """Raise a RefineError with the install command when the CRF extra is missing."""
    _densecrf()


def dense_crf(image: np.ndarray, probs: np.ndarray, params: CRFParams = CRFParams()) -> np.ndarray:
    """Refine (C,H,W) class probabilities with a dense CRF guided by the HxWx3 uint8 RGB image.

    Returns (C,H,W) float32 marginals (each pixel sums to 1). Degenerate inputs (one class, one
    pixel, zero iterations) return the input probabilities unchanged.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, got {image.dtype} {image.shape}")
    if probs.ndim != 3 or probs.shape[1:] != image.shape[:2]:
        raise ValueError(f"probs must be (C, {image.shape[0]}, {image.shape[1]}), got {probs.shape}")
    num_classes, height, width = probs.shape
    if num_classes < 2 or height * width < 2 or params.iterations == 0:
        return probs.astype(np.float32, copy=True)
    densecrf = _densecrf()
    clipped = np.clip(probs.astype(np.float32, copy=False), params.prob_clip, 1.0)
    unary = np.ascontiguousarray(-np.log(clipped).reshape(num_classes, -1), dtype=np.float32)
    crf = densecrf.DenseCRF2D(width, height, num_classes)  # width first: pydensecrf's order
    crf.setUnaryEnergy(unary)
    if params.pos_w > 0:
        crf.addPairwiseGaussian(sxy=params.pos_xy_std, compat=params.pos_w)
    if params.bi_w > 0:
        crf.addPairwiseBilateral(
            sxy=params.bi_xy_std, srgb=params.bi_rgb_std, rgbim=np.ascontiguousarray(image), compat=params.bi_w
        )
    marginals = np.asarray(crf.inference(params.iterations), dtype=np.float32)
    return marginals.reshape(num_classes, height, width)


def _crf_labels(image: np.ndarray, probs: np.ndarray, params: CRFParams) -> np.ndarray:
    """Worker entry point: CRF-refined argmax labels (uint8 pickles 4C times smaller than marginals)."""
    return dense_crf(image, probs, params).argmax(axis=0).astype(np.uint8)


def _crf_probs(image: np.ndarray, probs: np.ndarray, params: CRFParams) -> np.ndarray:
    return dense_crf(image, probs, params)


def default_workers() -> int:
    """One worker per CPU core left after the main (inference) process, at least one."""
    return max(1, (os.cpu_count() or 2) - 1)


class CRFPool:
    """Runs dense CRFs in worker processes (or inline with workers <= 1), keeping results in order.

    Uses the 'spawn' start method: forking a process that already runs torch's thread pools can
    deadlock, and this module needs nothing from the parent but NumPy and pydensecrf.
    """

    def __init__(self, params: CRFParams = CRFParams(), workers: int | None = None) -> None:
        check_available()
        self.params = params
        self.workers = default_workers() if workers is None or workers <= 0 else pool_size(workers, workers)
        self._executor: ProcessPoolExecutor | None = None
        if self.workers > 1:
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent
            )

    def submit(self, image: np.ndarray, probs: np.ndarray, labels_only: bool = True) -> Future[np.ndarray]:
        """Queue one image; the future yields uint8 labels (HxW) or float32 marginals (C,H,W)."""
        function = _crf_labels if labels_only else _crf_probs
        if self._executor is not None:
            return self._executor.submit(function, image, probs, self.params)
        future: Future[np.ndarray] = Future()
        try:
            future.set_result(function(image, probs, self.params))
        except BaseException as error:  # noqa: BLE001 - delivered through the future like a worker's error
            future.set_exception(error)
        return future

    def map_ordered(
        self, items: Iterable[T], prepare: Callable[[T], tuple[np.ndarray, np.ndarray]], labels_only: bool = True
    ) -> Iterator[tuple[T, np.ndarray]]:
        """Yield (item, CRF result) in input order, keeping at most 2x workers images in flight."""
        pending: deque[tuple[T, Future[np.ndarray]]] = deque()
        limit = max(1, 2 * self.workers)
        for item in items:
            image, probs = prepare(item)
            pending.append((item, self.submit(image, probs, labels_only)))
            while len(pending) >= limit:
                done_item, future = pending.popleft()
                yield done_item, future.result()
        while pending:
            done_item, future = pending.popleft()
            yield done_item, future.result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> CRFPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
