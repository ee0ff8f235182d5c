"""Paired image/label augmentation for training, on uint8 numpy arrays (cheap to ship from workers).

The Light-Weight RefineNet recipe: random scale U(scale_min, scale_max) with the short side kept at
least `min_short_side`, pad up to the crop size (image with the ImageNet mean colour, which becomes
~0 after normalisation; label with the ignore index), random crop, random horizontal flip. Images are
resized with INTER_LINEAR, labels with INTER_NEAREST (class indices must never be blended).
Normalisation happens later, on the training device (see `refine_cli.data.load.normalize`).

Every random draw comes from the `numpy.random.Generator` passed in, so a sample's augmentation is a
pure function of its seed: runs are reproducible whatever the number of loader workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from refine_cli.data.load.normalize import IMAGENET_MEAN

MEAN_RGB_UINT8: tuple[int, int, int] = tuple(int(round(m * 255)) for m in IMAGENET_MEAN)  # type: ignore[assignment]


@dataclass(frozen=True)
class TrainTransform:
    """Random scale -> pad -> random crop -> random h-flip, applied identically to image and label."""

    crop: int
    scale_min: float = 0.5
    scale_max: float = 2.0
    min_short_side: int | None = 350
    max_short_side: int | None = None  # larger images are scaled as if their short side were this
    hflip: bool = True
    ignore_index: int = 255
    fill: tuple[int, int, int] = MEAN_RGB_UINT8

    def __post_init__(self) -> None:
        if self.crop <= 0 or not 0 < self.scale_min <= self.scale_max:
            raise ValueError("crop must be positive and 0 < scale_min <= scale_max")

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """HxWx3 uint8 image and HxW uint8 label -> crop x crop x 3 and crop x crop uint8 arrays."""
        if image.shape[:2] != label.shape:
            raise ValueError(f"image {image.shape[:2]} and label {label.shape} differ in size")
        scale = self.sample_scale(label.shape, rng)
        if scale != 1.0:
            height, width = label.shape
            size = (max(1, round(width * scale)), max(1, round(height * scale)))  # cv2 wants (w, h)
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
            label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
        image, label = self.pad(image, label)
        image, label = self.random_crop(image, label, rng)
        if self.hflip and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        return np.ascontiguousarray(image), np.ascontiguousarray(label)

    def sample_scale(self, shape: tuple[int, int], rng: np.random.Generator) -> float:
        """U(scale_min, scale_max) of the working size, raised so the short side reaches `min_short_side` (as LW
        does). The working size is the image's own, or a short side of `max_short_side` for larger images."""
        short = min(shape)
        base = self.max_short_side / short if self.max_short_side is not None and short > self.max_short_side else 1.0
        scale = float(rng.uniform(self.scale_min, self.scale_max)) * base
        if self.min_short_side is not None and short * scale < self.min_short_side:
            scale = self.min_short_side / short
        return scale

    def pad(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pad both sides symmetrically up to the crop size: image with the mean, label with ignore."""
        height, width = label.shape
        pad_h, pad_w = max(0, self.crop - height), max(0, self.crop - width)
        if not pad_h and not pad_w:
            return image, label
        top, left = pad_h // 2, pad_w // 2
        borders = (top, pad_h - top, left, pad_w - left)
        image = cv2.copyMakeBorder(image, *borders, cv2.BORDER_CONSTANT, value=self.fill)
        label = cv2.copyMakeBorder(label, *borders, cv2.BORDER_CONSTANT, value=self.ignore_index)
        return image, label

    def random_crop(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        height, width = label.shape
        top = int(rng.integers(0, height - self.crop + 1))
        left = int(rng.integers(0, width - self.crop + 1))
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        return image[window], label[window]
