"""Throughput of the training data pipeline (decode + LW augmentation + collate) in images per second.

    .venv/bin/python tools/bench_pipeline.py [--images 120] [--crop 500] [--batch 6] [--workers 0 2]
                                             [--epochs 2] [--json PATH]

Writes a synthetic unified dataset of 500x375 JPEGs (VOC-sized, quality 90) with palette PNG labels to
a temporary folder, then times full epochs of `refine train`'s loader: JPEG + PNG decode, random scale
U(0.5, 2.0) with the short side >= 350, pad, random 500x500 crop, flip, uint8 batches. The first batch
of every epoch (worker start-up and prefetch) is excluded. Normalisation is not included: the trainer
does it on the device.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from refine_cli.class_tables import voc_palette
from refine_cli.data.format.unified import DatasetMeta, UnifiedDataset, UnifiedWriter
from refine_cli.data.load.dataset import SegmentationDataset
from refine_cli.data.load.loader import build_train_loader, epoch_sampler
from refine_cli.data.load.transforms import TrainTransform


def make_dataset(root: Path, images: int, height: int = 375, width: int = 500, classes: int = 21) -> Path:
    """Smooth random images with a few coloured ellipses and matching labels (realistic JPEG sizes)."""
    writer = UnifiedWriter(root, "bench")
    writer.prepare_dirs()
    palette = voc_palette(classes)
    ids = []
    for index in range(images):
        rng = np.random.default_rng(index)
        noise = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        image = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
        label = np.zeros((height, width), np.uint8)
        for _ in range(4):
            cls = int(rng.integers(1, classes))
            center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            axes = (int(rng.integers(20, 150)), int(rng.integers(20, 120)))
            cv2.ellipse(image, center, axes, 0, 0, 360, tuple(int(c) for c in palette[cls]), -1)
            cv2.ellipse(label, center, axes, 0, 0, 360, cls, -1)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        sample_id = f"img_{index:05d}"
        writer.write_image_bytes(sample_id, jpeg.tobytes(), "jpg")
        writer.write_label(sample_id, label, palette)
        ids.append(sample_id)
    writer.write_splits({"train": ids})
    names = [f"class_{k}" for k in range(classes)]
    writer.write_meta(DatasetMeta(name="bench", num_classes=classes, classes=names, palette=palette))
    return writer.path


def time_loader(path: Path, crop: int, batch: int, workers: int, epochs: int) -> dict[str, float]:
    transform = TrainTransform(crop=crop, scale_min=0.5, scale_max=2.0, min_short_side=350)
    dataset = SegmentationDataset(UnifiedDataset(path), "train", transform, seed=0)
    loader = build_train_loader(dataset, batch=batch, workers=workers, seed=0)
    sampler = epoch_sampler(loader)
    timed_images, timed_seconds = 0, 0.0
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        iterator = iter(loader)
        next(iterator)  # worker start-up and the first prefetch are not steady state
        start = time.perf_counter()
        count = 0
        for batch in iterator:
            if any(batch["problem"]):  # a flagged sample skips decoding work and would inflate the numbers
                raise SystemExit(f"bad sample: {next(p for p in batch['problem'] if p)}")
            count += batch["image"].shape[0]
        timed_seconds += time.perf_counter() - start
        timed_images += count
    return {"workers": workers, "images": timed_images, "seconds": round(timed_seconds, 3),
            "images_per_s": round(timed_images / timed_seconds, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--crop", type=int, default=500)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the main process only collates; keep it from competing with the workers
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = make_dataset(Path(tmp), args.images)
        print(f"wrote {args.images} synthetic 500x375 JPEG samples in {time.perf_counter() - start:.1f} s")
        results = [time_loader(path, args.crop, args.batch, w, args.epochs) for w in args.workers]
    for row in results:
        print(
            f"workers={row['workers']}: {row['images_per_s']:.1f} img/s ({row['images']} images in {row['seconds']} s)"
        )
    report = {
        "crop": args.crop, "batch": args.batch, "images": args.images, "epochs": args.epochs,
        "cpu_count": __import__("os").cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "opencv": cv2.__version__, "results": results,
    }  # fmt: skip
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
