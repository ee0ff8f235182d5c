"""Benchmark `refine prepare voc --aug` against a plain single-process PIL loop, and `refine check`.

Builds a VOC + SBD fixture of a few hundred 500x375 images in the official layouts (the same
builders the tests use), then times:
  1. the refine pipeline (`prepare_dataset('voc', aug=True)`) with N workers, conversion phase only;
  2. a plain loop in one process doing the same work per sample: read the label (PIL indices or the
     SBD .mat), fully decode the image to validate it, compare sizes, write the palette label PNG,
     copy the JPEG; and the same loop with the pipeline's two codec settings (JPEG validated by a
     draft-mode decode, label PNG at zlib level 1), to separate those from parallelism;
  3. `refine check` (check_dataset) on the pipeline's output.
Wall-clock rates depend on what else runs on the machine, so CPU time per sample (all processes,
user + system) is reported too, and the load average before and after.
Usage: .venv/bin/python tools/bench_convert.py [--images 300] [--workers 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from refine_cli.class_tables import voc_palette  # noqa: E402
from refine_cli.data.convert.pipeline import prepare_dataset  # noqa: E402
from refine_cli.data.format.check import check_dataset  # noqa: E402
from tests.support.fake_voc2012_sbd_coco import build_sbd, build_voc, fixture_manifest  # noqa: E402


def make_fixture(folder: Path, images: int) -> tuple[Path, Path, dict[str, int]]:
    """VOC train/val and SBD train/val ids with every train_aug case; about `images` samples in total."""
    ids = [f"2009_{k:06d}" for k in range(images)]
    n_voc = images * 5 // 9
    voc_train, voc_val = ids[: n_voc * 3 // 5], ids[n_voc * 3 // 5 : n_voc]
    sbd_only = ids[n_voc:]
    # SBD train holds some VOC train ids (VOC label wins) and some VOC val ids (must be excluded).
    sbd_train = voc_train[: len(voc_train) // 3] + voc_val[: len(voc_val) // 2] + sbd_only[: len(sbd_only) * 2 // 3]
    sbd_val = sbd_only[len(sbd_only) * 2 // 3 :]
    size = (375, 500)
    voc = build_voc(folder, voc_train, voc_val, size=size)
    sbd = build_sbd(folder, sbd_train, sbd_val, size=size)
    splits = {"train": len(voc_train), "val": len(voc_val), "train_aug": len(voc_train) + len(sbd_only)}
    return voc.archive, sbd.archive, splits


def plain_loop(voc_root: Path, sbd_root: Path, out: Path, splits: dict[str, list[str]], tuned: bool = False) -> int:
    """The baseline: what a straightforward single-process script does for the same output.

    `tuned` gives it the pipeline's codec settings (draft-mode JPEG validation, PNG zlib level 1).
    """
    import scipy.io
    from PIL import Image

    flat_palette = [v for rgb in voc_palette(21) for v in rgb] + [0] * (768 - 3 * 21)
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir(parents=True)
    voc_ids = set(splits["train"]) | set(splits["val"])
    done = 0
    for sample_id in sorted(set().union(*splits.values())):
        if sample_id in voc_ids:
            image_path = voc_root / "JPEGImages" / f"{sample_id}.jpg"
            label = np.array(Image.open(voc_root / "SegmentationClass" / f"{sample_id}.png"))
        else:
            image_path = sbd_root / "img" / f"{sample_id}.jpg"
            mat = scipy.io.loadmat(sbd_root / "cls" / f"{sample_id}.mat", squeeze_me=True, struct_as_record=False)
            label = np.asarray(mat["GTcls"].Segmentation, dtype=np.uint8)
        with Image.open(image_path) as image:
            size = image.size
            if tuned:
                image.draft(image.mode, (size[0] // 8, size[1] // 8))
            image.load()
            if size != (label.shape[1], label.shape[0]):
                raise SystemExit(f"size mismatch for {sample_id}")
        if not np.all((label <= 20) | (label == 255)):
            raise SystemExit(f"bad label values for {sample_id}")
        png = Image.fromarray(label)
        png.putpalette(flat_palette)
        png.save(out / "labels" / f"{sample_id}.png", compress_level=1 if tuned else 6)
        shutil.copyfile(image_path, out / "images" / f"{sample_id}.jpg")
        done += 1
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="about this many samples in total")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="best of N for each timing")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="refine-bench-") as tmp:
        tmp_path = Path(tmp)
        voc_tar, sbd_tgz, expected = make_fixture(tmp_path / "archives", args.images)
        manifest = fixture_manifest(tmp_path, "voc", {"trainval": voc_tar, "sbd": sbd_tgz}, None, expected)
        common = dict(options={"aug": True}, archives=voc_tar.parent, manifest=manifest, notify=lambda _m: None)

        refine_rates: dict[int, float] = {}
        refine_cpu: dict[int, float] = {}
        refine_total = []
        report = None
        run = 0
        for workers in sorted({1, args.workers}):
            for _ in range(args.repeats):
                root = tmp_path / f"refine{run}"
                if run:  # reuse the extraction: only conversion is being measured
                    shutil.copytree(tmp_path / "refine0" / "downloads", root / "downloads", symlinks=True)
                report = prepare_dataset("voc", root=root, workers=workers, **common)
                refine_rates[workers] = max(refine_rates.get(workers, 0.0), report.images_per_s)
                cpu_ms = 1000 * report.convert_cpu_seconds / max(report.converted, 1)
                refine_cpu[workers] = min(refine_cpu.get(workers, float("inf")), cpu_ms)
                if workers == args.workers:
                    refine_total.append(report.seconds)
                run += 1
        assert report is not None and report.check is not None and report.check.ok
        converted = report.converted

        extracted = tmp_path / "refine0" / "downloads" / "extracted"
        voc_root = extracted / "VOCtrainval_11-May-2012" / "VOCdevkit" / "VOC2012"
        sbd_root = extracted / "benchmark" / "benchmark_RELEASE" / "dataset"
        from refine_cli.data.format.unified import UnifiedDataset

        dataset = UnifiedDataset(report.path)
        split_ids = {split: dataset.split_ids(split) for split in dataset.splits}
        plain_rates: dict[bool, float] = {}
        plain_cpu: dict[bool, float] = {}
        for repeat in range(args.repeats):
            for tuned in (False, True):
                start, cpu_start = time.perf_counter(), time.process_time()
                count = plain_loop(voc_root, sbd_root, tmp_path / f"plain{repeat}{tuned}", split_ids, tuned)
                plain_rates[tuned] = max(plain_rates.get(tuned, 0.0), count / (time.perf_counter() - start))
                cpu_ms = 1000 * (time.process_time() - cpu_start) / count
                plain_cpu[tuned] = min(plain_cpu.get(tuned, float("inf")), cpu_ms)

        check_rates: dict[str, float] = {}
        for workers in sorted({1, args.workers}):
            for full in (False, True):
                best = 0.0
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    checked = check_dataset(report.path, workers=workers, full=full)
                    best = max(best, converted / (time.perf_counter() - start))
                    assert checked.ok
                check_rates[f"workers={workers}{' full' if full else ''}"] = best

    result = {
        "samples": converted,
        "image_size": "500x375",
        "splits": report.splits,
        "workers": args.workers,
        "refine_images_per_s": {f"workers={w}": round(v, 1) for w, v in refine_rates.items()},
        "refine_cpu_ms_per_sample": {f"workers={w}": round(v, 2) for w, v in refine_cpu.items()},
        "refine_prepare_seconds_incl_check": round(min(refine_total), 2),
        "plain_loop_images_per_s": round(plain_rates[False], 1),
        "plain_loop_cpu_ms_per_sample": round(plain_cpu[False], 2),
        "plain_loop_tuned_images_per_s": round(plain_rates[True], 1),
        "plain_loop_tuned_cpu_ms_per_sample": round(plain_cpu[True], 2),
        "speedup_vs_plain": round(refine_rates[args.workers] / plain_rates[False], 2),
        "speedup_vs_plain_tuned": round(refine_rates[args.workers] / plain_rates[True], 2),
        "check_images_per_s": {k: round(v, 1) for k, v in check_rates.items()},
        "cpu_count": os.cpu_count(),
        "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
