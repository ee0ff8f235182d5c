"""`shapes`: a deterministic synthetic segmentation dataset, drawn locally with OpenCV.

Small enough to train a model on a CPU in minutes, hard enough that a model must learn something:
textured, noisy backgrounds; five overlapping shape classes whose colours are class-typical but
jittered (and occasionally random, so geometry matters too); a 2-pixel ignore (255) band along
every class boundary, like VOC's object outlines. Every sample is drawn from its own generator
seeded by (seed, index), so the same seed gives byte-identical files and the first k samples do
not depend on n.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import cv2
import numpy as np

from refine_cli.class_tables import voc_palette
from refine_cli.data.format.image_sizes import measure_image_sizes
from refine_cli.data.format.unified import DatasetMeta, UnifiedWriter
from refine_cli.locks import hold_lock
from refine_cli.workers import die_with_parent, pool_size

SHAPES_CLASSES: list[str] = ["background", "circle", "square", "triangle", "ellipse", "star"]
SHAPES_VERSION = "1"
IGNORE = 255
_HUES = {1: 0, 2: 60, 3: 120, 4: 30, 5: 150}  # OpenCV hue (0-180): red, green, cyan, yellow, purple
_RANDOM_COLOUR_PROB = 0.15
_JPEG_QUALITY = 92
_CHUNK = 16  # samples per task when drawing in worker processes


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-frequency coloured noise plus a gradient and grain, in muted colours (float32 0-255)."""
    grid = rng.integers(0, 256, size=(rng.integers(3, 7), rng.integers(3, 7), 3)).astype(np.float32)
    smooth = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    gray = smooth.mean(axis=2, keepdims=True)
    muted = gray + 0.35 * (smooth - gray)  # low saturation so shapes stand out, but not trivially
    ramp = np.linspace(-30, 30, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    gradient = math.cos(angle) * ramp[None, :, None] + math.sin(angle) * ramp[:, None, None]
    grain = rng.normal(0, 10, size=(size, size, 3)).astype(np.float32)
    return np.clip(muted + gradient + grain, 0, 255)


def _shape_colour(rng: np.random.Generator, cls: int) -> np.ndarray:
    hue = rng.integers(0, 180) if rng.random() < _RANDOM_COLOUR_PROB else (_HUES[cls] + rng.integers(-8, 9)) % 180
    hsv = np.array([[[hue, rng.integers(120, 256), rng.integers(110, 256)]]], dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _polygon(rng: np.random.Generator, cls: int, cx: float, cy: float, radius: float) -> np.ndarray | None:
    angle = rng.uniform(0, 2 * math.pi)
    if cls == 2:  # square
        corners = [angle + k * math.pi / 2 for k in range(4)]
        points = [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in corners]
    elif cls == 3:  # triangle
        corners = [angle + k * 2 * math.pi / 3 for k in range(3)]
        points = [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in corners]
    elif cls == 5:  # five-pointed star
        points = []
        for k in range(10):
            r = radius if k % 2 == 0 else radius * 0.45
            a = angle + k * math.pi / 5
            points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    else:
        return None
    return np.array(points, dtype=np.float64)


def _shape_mask(rng: np.random.Generator, cls: int, size: int) -> np.ndarray:
    """Anti-aliased coverage (float32 0-1) of one random shape of class `cls`."""
    shift = 4  # sub-pixel precision for OpenCV drawing
    scale = 1 << shift
    canvas = np.zeros((size, size), dtype=np.uint8)
    radius = rng.uniform(0.09, 0.24) * size
    cx, cy = rng.uniform(0.1, 0.9, size=2) * size
    if cls == 1:
        cv2.circle(canvas, (int(cx * scale), int(cy * scale)), int(radius * scale), 255, -1, cv2.LINE_AA, shift)
    elif cls == 4:
        axes = (int(radius * scale), int(radius * rng.uniform(0.35, 0.6) * scale))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(canvas, (int(cx * scale), int(cy * scale)), axes, angle, 0, 360, 255, -1, cv2.LINE_AA, shift)
    else:
        points = _polygon(rng, cls, cx, cy, radius)
        cv2.fillPoly(canvas, [np.round(points * scale).astype(np.int32)], 255, cv2.LINE_AA, shift)
    return canvas.astype(np.float32) / 255.0


def render_sample(seed: int, index: int, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One (HxWx3 uint8 RGB image, HxW uint8 label) pair, a pure function of (seed, index, size)."""
    rng = np.random.default_rng([seed, index])
    image = _background(rng, size)
    label = np.zeros((size, size), dtype=np.uint8)
    for _ in range(int(rng.integers(3, 7))):
        cls = int(rng.integers(1, len(SHAPES_CLASSES)))
        coverage = _shape_mask(rng, cls, size)
        colour = _shape_colour(rng, cls)
        texture = rng.normal(0, 12, size=(size, size, 1)).astype(np.float32)
        if rng.random() < 0.5:  # stripes on some shapes: texture is a cue, never the only one
            period = rng.uniform(4, 10)
            yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
            texture += 25 * np.sin((xx + yy * rng.uniform(-1, 1)) * 2 * math.pi / period)[..., None]
        fill = np.clip(colour[None, None, :] + texture, 0, 255)
        alpha = coverage[..., None]
        image = image * (1 - alpha) + fill * alpha
        label[coverage >= 0.5] = cls
    kernel = np.ones((3, 3), np.uint8)
    boundary = cv2.dilate(label, kernel) != cv2.erode(label, kernel)
    label[boundary] = IGNORE
    return np.round(image).astype(np.uint8), label


def _write_samples(writer: UnifiedWriter, palette: list[list[int]], seed: int, size: int, indices: list[int]) -> int:
    """Draw and write samples `indices` (label last, so an existing label means a complete sample)."""
    for index in indices:
        sample_id = f"shape_{index:05d}"
        image, label = render_sample(seed, index, size)
        ok, jpeg = cv2.imencode(
            ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]
        )
        if not ok:
            raise RuntimeError(f"OpenCV could not encode sample {sample_id}")
        writer.write_image_bytes(sample_id, jpeg.tobytes(), "jpg")
        writer.write_label(sample_id, label, palette)
    return len(indices)


def _write_all(
    writer: UnifiedWriter, palette: list[list[int]], seed: int, size: int, n: int, workers: int
) -> Iterator[int]:
    """Write samples 0..n-1 in chunks, here or in `workers` processes; yields each finished chunk's size."""
    chunks = [list(range(start, min(start + _CHUNK, n))) for start in range(0, n, _CHUNK)]
    workers = pool_size(workers, len(chunks))
    if workers <= 1:
        yield from (_write_samples(writer, palette, seed, size, chunk) for chunk in chunks)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent) as pool:
        futures = [pool.submit(_write_samples, writer, palette, seed, size, chunk) for chunk in chunks]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def generate_shapes(
    root: Path,
    n: int = 400,
    size: int = 128,
    seed: int = 0,
    val_fraction: float = 0.2,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> Path:
    """Write the `shapes` dataset to `root/shapes` in the unified format; returns the dataset folder.

    Existing files are overwritten (the dataset is cheap to regenerate); samples beyond `n` from an
    earlier, larger run are removed so the folder always matches its meta.json. Samples are drawn
    independently, so `workers` processes give byte-identical files.
    """
    if n < 2:
        raise ValueError("the shapes dataset needs n >= 2 (one train and one val sample at least)")
    if not 32 <= size <= 2048:
        raise ValueError("size must be between 32 and 2048 pixels")
    with hold_lock(Path(root) / "shapes", "dataset folder"):  # two generators at once would mix their files
        return _write_shapes(Path(root), n, size, seed, val_fraction, progress, workers)


def _write_shapes(
    root: Path,
    n: int,
    size: int,
    seed: int,
    val_fraction: float,
    progress: Callable[[int, int], None] | None,
    workers: int,
) -> Path:
    writer = UnifiedWriter(root, "shapes")
    writer.prepare_dirs()
    writer.remove_meta()
    writer.remove_temporary_files()
    palette = [list(c) for c in voc_palette(len(SHAPES_CLASSES))]
    ids = [f"shape_{index:05d}" for index in range(n)]
    keep = set(ids)
    for folder in (writer.images_dir, writer.labels_dir):
        for stale in folder.glob("shape_*.*"):
            if stale.stem not in keep:
                stale.unlink()
    done = 0
    for count in _write_all(writer, palette, seed, size, n, workers):
        done += count
        if progress is not None:
            progress(done, n)
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    val_set = set(np.random.default_rng(seed).permutation(n)[:n_val].tolist())
    splits = {
        "train": [sample_id for index, sample_id in enumerate(ids) if index not in val_set],
        "val": [sample_id for index, sample_id in enumerate(ids) if index in val_set],
    }
    writer.write_splits(splits)
    writer.write_meta(
        DatasetMeta(
            name="shapes",
            num_classes=len(SHAPES_CLASSES),
            classes=list(SHAPES_CLASSES),
            palette=palette,
            ignore_index=IGNORE,
            splits={name: len(split_ids) for name, split_ids in splits.items()},
            converter="shapes",
            converter_version=SHAPES_VERSION,
            extra={"generator": {"n": n, "size": size, "seed": seed, "val_fraction": val_fraction}},
            image_sizes=measure_image_sizes(writer.label_path(i) for i in ids).to_dict(),  # type: ignore[union-attr]
        )
    )
    return writer.path
