"""Benchmark `refine prepare custom` on LabelMe files against labelme's own `labelme2voc.py`, and compare labels.

Makes N labelme JSON files (default 1,000) as labelme 6 saves them (imagePath to a 640x480 JPEG beside
the JSON, no imageData, its default), each with 10 polygons of 8-16 vertices in 3 classes, then times,
each as its own process (start-up included):
  1. `refine prepare custom` with --workers W (the whole command: plan, conversion, final check);
  2. labelme2voc.py as labelme ships it in examples/semantic_segmentation/, in a Python that has labelme,
     lean (`--noviz --nonpy --noobject`: a JPEG and a class PNG per file, the closest to what refine
     writes) and as its README runs it (adds visualisations, .npy files and instance labels);
and compares every label refine wrote with labelme2voc's SegmentationClass PNG, pixel for pixel.
Wall time depends on what else runs on the machine, so CPU time (user + system of the process and its
workers) and the load average are reported too.
Usage: .venv/bin/python tools/bench_labelme.py --labelme-python /path/to/labelme-venv/bin/python
           --labelme2voc /path/to/labelme2voc.py [--files 1000] [--workers 2] [--repeats 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["cat", "dog", "person"]
HEIGHT, WIDTH = 480, 640


def _polygon(rng: np.random.Generator) -> list[list[float]]:
    """A random star-shaped polygon of 8-16 vertices, coordinates with labelme's float precision."""
    cx, cy = rng.uniform(40, WIDTH - 40), rng.uniform(40, HEIGHT - 40)
    count = int(rng.integers(8, 17))
    angles = np.sort(rng.uniform(0, 2 * np.pi, count))
    radii = rng.uniform(15, 110, count)
    xs = np.clip(cx + radii * np.cos(angles), 0, WIDTH - 1)
    ys = np.clip(cy + radii * np.sin(angles), 0, HEIGHT - 1)
    return [[float(x), float(y)] for x, y in zip(xs, ys, strict=True)]


def _shape(label: str, points: list[list[float]]) -> dict:
    return {"label": label, "points": points, "group_id": None, "description": "", "shape_type": "polygon",
            "flags": {}, "mask": None}  # fmt: skip


def _image(rng: np.random.Generator) -> np.ndarray:
    grid = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(grid).resize((WIDTH, HEIGHT), Image.BILINEAR), dtype=np.int16)
    return np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8)


def make_files(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        name = f"img_{i:05d}"
        Image.fromarray(_image(rng)).save(folder / f"{name}.jpg", quality=90)
        shapes = [_shape(CLASSES[int(rng.integers(0, 3))], _polygon(rng)) for _ in range(10)]
        doc = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": f"{name}.jpg", "imageData": None,
               "imageHeight": HEIGHT, "imageWidth": WIDTH}  # fmt: skip
        (folder / f"{name}.json").write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")


def timed(command: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall and CPU seconds (user + system of the command and every process it started)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def compare(refine_dataset: Path, voc: Path) -> dict[str, int]:
    """Labels that differ from labelme2voc's SegmentationClass PNG (palette indices; -1 saved as 255)."""
    sys.path.insert(0, str(ROOT))
    from refine_cli.data.format.unified import UnifiedDataset

    dataset = UnifiedDataset(refine_dataset)
    differing = pixels = 0
    for sample_id in dataset.label_ids():
        theirs = np.array(Image.open(voc / "SegmentationClass" / f"{sample_id}.png"))
        diff = int((dataset.read_label(sample_id) != theirs).sum())
        differing, pixels = differing + (diff > 0), pixels + diff
    return {"labels": len(dataset.label_ids()), "labels_differing": differing, "pixels_differing": pixels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labelme-python", required=True, help="a Python with labelme installed")
    parser.add_argument("--labelme2voc", type=Path, required=True, help="labelme's examples/.../labelme2voc.py")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each; the fastest wall time is kept")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-labelme-"))
    try:
        make_files(work / "labelme", args.files)
        labels = work / "labels.txt"
        labels.write_text("__ignore__\n_background_\n" + "\n".join(CLASSES) + "\n", encoding="utf-8")
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
        runs: dict[str, list[dict[str, float]]] = {}
        load_before = os.getloadavg()
        for repeat in range(args.repeats):
            for name in ("refine", "labelme2voc lean", "labelme2voc default"):
                out = work / f"out-{repeat}-{name.replace(' ', '-')}"
                if name == "refine":
                    command = [sys.executable, "-m", "refine_cli", "prepare", "custom", "bench", "--from",
                               str(work / "labelme"), "--root", str(out), "--classes", str(labels), "-j",
                               str(args.workers)]  # fmt: skip
                else:
                    lean = ["--noviz", "--nonpy", "--noobject"] if "lean" in name else []
                    command = [args.labelme_python, str(args.labelme2voc), str(work / "labelme"), str(out),
                               "--labels", str(labels), *lean]  # fmt: skip
                runs.setdefault(name, []).append(timed(command, env))
        results = {name: min(times, key=lambda t: t["wall_s"]) for name, times in runs.items()}
        agreement = compare(work / "out-0-refine" / "bench", work / "out-0-labelme2voc-lean")
        report = {"files": args.files, "workers": args.workers, "cpus": os.cpu_count(), "results": results,
                  "all_runs": runs, "agreement": agreement, "load_before": load_before,
                  "load_after": os.getloadavg()}  # fmt: skip
        base = results["refine"]
        for name, result in results.items():
            speed = f"{result['wall_s'] / base['wall_s']:.2f}x wall, {result['cpu_s'] / base['cpu_s']:.2f}x CPU"
            print(f"{name:22s} {result['wall_s']:8.2f} s wall {result['cpu_s']:8.2f} s CPU   refine is {speed}")
        print(f"labels compared: {agreement}")
        print(f"load average before {load_before}, after {report['load_after']}")
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
