"""Throughput of the scoring path: refine's ConfusionMatrix vs a plain NumPy confusion matrix, and CRF time.

    .venv/bin/python tools/bench_metrics.py [--images 200] [--size 375x500] [--classes 21] [--crf] [--json PATH]

Inputs are synthetic VOC-sized label maps (uint8, ~5% ignore pixels) and int64 argmax-like
predictions, generated once before timing; the numbers are pixels scored per second (Mpixel/s).
The NumPy baseline is the FCN `fast_hist` loop that most segmentation repos copy.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from refine_cli.engine.eval.metrics import ConfusionMatrix


def numpy_confusion(preds: list[np.ndarray], labels: list[np.ndarray], num_classes: int) -> np.ndarray:
    """The textbook loop: mask valid pixels, bincount label*C+pred per image."""
    hist = np.zeros((num_classes, num_classes), dtype=np.int64)
    for pred, label in zip(preds, labels, strict=True):
        valid = (label >= 0) & (label < num_classes)
        hist += np.bincount(num_classes * label[valid].astype(int) + pred[valid], minlength=num_classes**2).reshape(
            num_classes, num_classes
        )
    return hist


def _data(images: int, height: int, width: int, classes: int, seed: int = 0) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    labels, preds = [], []
    for _ in range(images):
        label = rng.integers(0, classes, size=(height, width)).astype(np.uint8)
        label[rng.random((height, width)) < 0.05] = 255
        pred = np.where(rng.random((height, width)) < 0.8, label, rng.integers(0, classes, (height, width)))
        preds.append(np.where(label == 255, 0, pred).astype(np.int64))
        labels.append(label)
    return preds, labels


def _best_of(function, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def bench_scoring(images: int, height: int, width: int, classes: int, repeats: int) -> dict:
    preds, labels = _data(images, height, width, classes)
    torch_preds = [torch.from_numpy(p) for p in preds]
    uint8_preds = [p.to(torch.uint8) for p in torch_preds]  # what PNG predictions (eval --pred) arrive as
    pixels = images * height * width

    def refine_cm(source: list[torch.Tensor]) -> np.ndarray:
        cm = ConfusionMatrix(classes)
        for pred, label in zip(source, labels, strict=True):
            cm.update(pred, label)
        return cm.to_numpy()

    expected = numpy_confusion(preds, labels, classes)
    assert np.array_equal(refine_cm(torch_preds), expected) and np.array_equal(refine_cm(uint8_preds), expected)
    results = {}
    candidates = {
        "refine CM, int64 preds": lambda: refine_cm(torch_preds),
        "refine CM, uint8 preds": lambda: refine_cm(uint8_preds),
        "numpy fast_hist loop": lambda: numpy_confusion(preds, labels, classes),
    }
    for name, function in candidates.items():
        best, median = _best_of(function, repeats)
        results[name] = {"best_mpix_s": pixels / best / 1e6, "median_mpix_s": pixels / median / 1e6}
    return results


def bench_crf(repeats: int, height: int = 375, width: int = 500, classes: int = 21) -> dict:
    from refine_cli.engine.infer.crf import CRFParams, dense_crf

    rng = np.random.default_rng(0)
    # piecewise-smooth image (blocks + mild noise) and a noisy but informative unary
    blocks = rng.integers(0, 256, size=(6, 8, 3)).astype(np.float32)
    image = np.clip(
        np.kron(blocks, np.ones((63, 63, 1)))[:height, :width] + rng.normal(0, 6, (height, width, 3)), 0, 255
    )
    image = image.astype(np.uint8)
    truth = np.kron(rng.integers(0, classes, (6, 8)), np.ones((63, 63), dtype=int))[:height, :width]
    logits = rng.normal(0, 1.0, (classes, height, width)).astype(np.float32)
    logits[truth, np.arange(height)[:, None], np.arange(width)[None, :]] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
    out = {}
    for label, params in (("deeplab default (10 it)", CRFParams()), ("5 iterations", CRFParams(iterations=5))):
        best, median = _best_of(lambda p=params: dense_crf(image, probs, p), repeats)
        out[label] = {"best_s": best, "median_s": median}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", default="375x500", help="HxW of each label map")
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--crf", action="store_true", help="also time the dense CRF on a 500x375 image")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "images": args.images,
        "size": [height, width],
        "classes": args.classes,
        "scoring": bench_scoring(args.images, height, width, args.classes, args.repeats),
    }
    if args.crf:
        report["crf_500x375"] = bench_crf(args.repeats)
    for name, row in report["scoring"].items():
        print(f"{name:24s} best {row['best_mpix_s']:8.1f} Mpix/s   median {row['median_mpix_s']:8.1f} Mpix/s")
    for name, row in report.get("crf_500x375", {}).items():
        print(f"CRF {name:20s} best {row['best_s']:.3f} s   median {row['median_s']:.3f} s per 500x375 image")
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
