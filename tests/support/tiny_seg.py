"""A tiny learnable unified dataset for training tests: coloured rectangles on a noisy background."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from refine_cli.class_tables import voc_palette
from refine_cli.data.format.unified import DatasetMeta, UnifiedWriter


def make_tiny_dataset(
    root: Path,
    name: str = "tiny",
    num_classes: int = 3,
    train: int = 8,
    val: int = 4,
    size: tuple[int, int] = (48, 64),
    bad_label: tuple[str, int] | None = None,
) -> Path:
    """Write `<root>/<name>` with `train`/`val` splits; class k>0 is a rectangle of a fixed colour.

    `bad_label=(sample_id, value)` paints `value` into that sample's label (for error tests).
    """
    writer = UnifiedWriter(root, name)
    writer.prepare_dirs()
    colors = [(30, 30, 30), (220, 40, 40), (40, 200, 60), (40, 60, 220), (220, 220, 40)]
    height, width = size
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for split, count in (("train", train), ("val", val)):
        for i in range(count):
            sample_id = f"{split}_{i:03d}"
            rng = np.random.default_rng(i + (0 if split == "train" else 1000))
            image = np.empty((height, width, 3), np.uint8)
            image[:] = colors[0]
            label = np.zeros((height, width), np.uint8)
            for cls in range(1, num_classes):
                h, w = int(rng.integers(height // 4, height // 2)), int(rng.integers(width // 4, width // 2))
                top, left = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
                image[top : top + h, left : left + w] = colors[cls % len(colors)]
                label[top : top + h, left : left + w] = cls
            label[:2, :2] = 255  # a little ignore region, as real datasets have
            noise = rng.integers(-12, 13, image.shape)
            image = np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)
            if bad_label and bad_label[0] == sample_id:
                label[height // 2, width // 2] = bad_label[1]
            ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            assert ok
            writer.write_image_bytes(sample_id, data.tobytes(), "png")
            writer.write_label(sample_id, label, voc_palette(num_classes))
            splits[split].append(sample_id)
    writer.write_splits(splits)
    classes = ["background"] + [f"class{k}" for k in range(1, num_classes)]
    meta = DatasetMeta(
        name=name,
        num_classes=num_classes,
        classes=classes,
        palette=[list(c) for c in voc_palette(num_classes)],
        splits={k: len(v) for k, v in splits.items()},
    )
    writer.write_meta(meta)
    return writer.path
