"""A first real training run on small own data: val mIoU against wall time, refine's default vs two baselines.

    .venv/bin/python tools/bench_convergence.py [--train 40] [--val 16] [--size 96x128] [--out DIR]
    .venv/bin/python tools/bench_convergence.py --stability [--steps 80] [--models all]

The script draws its own data (the `shapes` generator's pictures, cut to --size, as photos + index
masks), turns them into a dataset with `refine prepare custom`, and trains three ways on it, one after
the other in this process, each with the same CPU threads (refine's rule) and the same validation
(refine's evaluator on the val split, its time counted in the wall time of every arm):

1. `refine train --data D` with no option: the own-data plan (model, crop, batch, length, recipe);
2. the official LW-RefineNet recipe (`--recipe lw-mbv2-voc`: crop 500, short side >= 350, batch 6, SGD
   lr 1e-3 encoder / 1e-2 decoder, momentum 0.9, wd 1e-5, BatchNorm frozen, 3 stages) for --lw-epochs;
   no ImageNet weights can be had here, so it starts from scratch like the others;
3. a minimal loop in the style of torchvision's segmentation reference (references/segmentation:
   RandomResize(0.5 x 520, 2 x 520) of the short side, flip, RandomCrop(480) padded with 0/255, batch 8,
   SGD lr 0.01 momentum 0.9 wd 1e-4, poly 0.9 per step, 30 epochs, BatchNorm trained), on the same model
   as the default plan; and the same loop with base size and crop set to the data's (--data-sized arm),
   which separates what sizing does from what the recipe does.

Output: a JSON of every validation point (seconds, step, mIoU) per arm, and a Markdown table: each
arm's final mIoU and time, and how long refine's default took to reach the minimal loop's final mIoU.

`--stability` trains every model of `refine models` (or --models) with the default own-data plan from
scratch for --steps steps of its real schedule (warm-up and peak learning rate included) and reports
the first and last loss, the largest loss and whether any was non-finite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from refine_cli.threads import wait_quietly_when_busy  # noqa: E402

wait_quietly_when_busy()  # what `refine` does before torch loads
from refine_cli.data.convert.shapes import SHAPES_CLASSES, render_sample  # noqa: E402


def make_photos(folder: Path, count: int, height: int, width: int, seed: int = 7) -> Path:
    """`count` shapes pictures cut to height x width, as a folder of photos + index masks + classes.txt."""
    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    for index in range(count):
        image, label = render_sample(seed, index, size=max(height, width))
        label = label[:height, :width]
        label = np.where(label == 255, 0, label).astype(np.uint8)  # hand-drawn masks have no ignore band
        Image.fromarray(image[:height, :width]).save(folder / "images" / f"p{index:04d}.jpg", quality=92)
        Image.fromarray(label).save(folder / "masks" / f"p{index:04d}.png")
    (folder / "classes.txt").write_text("".join(f"{name}\n" for name in SHAPES_CLASSES))
    return folder


def prepare(work: Path, n_train: int, n_val: int, height: int, width: int) -> Path:
    """The own dataset, through `refine prepare custom` (val fraction so that n_val images are held out)."""
    source = make_photos(work / "source", n_train + n_val, height, width)
    command = [sys.executable, "-m", "refine_cli", "prepare", "custom", "mine", "--from", str(source),
               "--classes", str(source / "classes.txt"), "--root", str(work), "--val-fraction",
               f"{n_val / (n_train + n_val):.6f}", "-j", "1"]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return work / "mine"


class Recorder:
    """Trainer callbacks: wall seconds since the first step, and every validation's mIoU."""

    def __init__(self, name: str, stop_after: int | None = None) -> None:
        self.name, self.stop_after = name, stop_after
        self.start: float | None = None
        self.points: list[dict[str, Any]] = []
        self.losses: list[float] = []
        self.plan = ""

    def on_start(self, total_steps: int, start_step: int, info: dict[str, Any]) -> None:
        self.start, self.total_steps = time.perf_counter(), total_steps

    def on_step(self, step: int, stats: dict[str, Any]) -> None:
        self.losses.append(float(stats["loss"]))
        if self.stop_after is not None and step >= self.stop_after:
            raise StopIteration  # a stability check stops here, its schedule unchanged

    def on_validation(self, step: int, row: dict[str, Any]) -> None:
        self.points.append({"seconds": round(time.perf_counter() - self.start, 2), "step": step,
                            "miou": row.get("miou")})  # fmt: skip
        print(f"  {self.name}: step {step}, {self.points[-1]['seconds']:.0f} s, mIoU {row.get('miou'):.4f}",
              flush=True)  # fmt: skip

    def on_validation_start(self, step: int) -> None: ...
    def on_checkpoint(self, step: int, path: Path) -> None: ...
    def on_estimate(self, estimate: Any) -> None: ...


def default_config(data: Path, out: Path, extra: dict[str, Any] | None = None) -> Any:
    """The config `refine train --data D --out R` resolves to (plus `extra` flags, dotted keys)."""
    from refine_cli.cli._train_config import resolve_run
    from refine_cli.engine.train.config import train_options

    flags: dict[str, Any] = {key: None for key, _, _ in train_options()}
    flags.update({"data.root": str(data), **(extra or {})})
    cfg, _, _, _, reason = resolve_run(flags, None, None, out, [])
    return cfg, reason


def run_trainer(cfg: Any, out: Path, recorder: Recorder) -> Recorder:
    from refine_cli.engine.train.trainer import Trainer

    try:
        Trainer(cfg, out, None, recorder).run()
    except StopIteration:
        pass
    return recorder


def lw_config(data: Path, epochs: int, val_every: int) -> Any:
    from refine_cli.engine.train.config import resolve_config

    overrides = {"data.root": str(data), "data.train_split": "train", "data.val_split": "val",
                 "model.pretrained_backbone": False, "train.epochs": epochs, "train.val_every": val_every,
                 "train.device": "cpu", "train.save_every_minutes": 0}  # fmt: skip
    return resolve_config("lw-mbv2-voc", overrides=overrides)


def minimal_loop(data: Path, model_name: str, base: int, crop: int, epochs: int, val_every: int,
                 name: str) -> Recorder:  # fmt: skip
    """torchvision's segmentation reference, reduced to its recipe: the loop a user writes by hand."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    from refine_cli.data.format.unified import UnifiedDataset
    from refine_cli.engine.eval.evaluator import evaluate
    from refine_cli.models import create_model

    source = UnifiedDataset(data)
    transform = v2.Compose([
        v2.RandomResize(int(0.5 * base), int(2.0 * base)), v2.RandomHorizontalFlip(0.5),
        v2.RandomCrop(crop, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: 255}),
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
        v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])  # fmt: skip

    class Pairs(torch.utils.data.Dataset):
        ids = source.split_ids("train")

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, index: int):  # noqa: ANN204
            sample = self.ids[index]
            image = tv_tensors.Image(torch.from_numpy(np.array(Image.open(source.image_path(sample)).convert("RGB")))
                                     .permute(2, 0, 1))  # fmt: skip
            mask = tv_tensors.Mask(torch.from_numpy(np.array(Image.open(source.label_path(sample)))))
            return transform(image, mask)

    loader = torch.utils.data.DataLoader(Pairs(), batch_size=8, shuffle=True, drop_last=True, num_workers=2)
    torch.manual_seed(42)
    model = create_model(model_name, num_classes=source.meta.num_classes).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    total = len(loader) * epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1 - step / total) ** 0.9)
    recorder = Recorder(name)
    recorder.on_start(total, 0, {})
    step = 0
    for _ in range(epochs):
        for images, masks in loader:
            logits = F.interpolate(model(images), size=masks.shape[-2:], mode="bilinear", align_corners=False)
            loss = F.cross_entropy(logits, masks, ignore_index=255)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            recorder.losses.append(float(loss.detach()))
            if step % val_every == 0 or step == total:
                report = evaluate(model, source, "val", device="cpu", progress=False)
                model.train()
                recorder.on_validation(step, {"miou": report.scores.summary()["miou"]})
    return recorder


def reached(points: list[dict[str, Any]], target: float) -> float | None:
    """Seconds at the first validation at or above `target` mIoU."""
    return next((p["seconds"] for p in points if p["miou"] is not None and p["miou"] >= target - 1e-9), None)


def convergence(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from refine_cli.threads import apply_threads

    height, width = (int(v) for v in args.size.split("x"))
    data = prepare(work, args.train, args.val, height, width)
    cfg, reason = default_config(data, work / "default", {"train.save_every_minutes": 0})
    threads = apply_threads(None, workers=cfg.data.workers)
    print(f"default plan: {cfg.description} | {reason} | threads {threads}", flush=True)
    total = cfg.train.epochs * max(1, args.train // cfg.data.batch)
    every = max(1, total // 12)
    cfg.train.val_every, cfg.train.val_unit = every, "steps"
    arms: dict[str, Recorder] = {}
    order = [a for a in args.arms.split(",") if a]
    for arm in order:
        apply_threads(None, workers=2)  # the same threads for every arm (each runs 2 loader workers)
        started = time.perf_counter()
        if arm == "default":
            arms[arm] = run_trainer(cfg, work / "default", Recorder("default"))
        elif arm == "lw":
            lw = lw_config(data, args.lw_epochs, 1)
            arms[arm] = run_trainer(lw, work / "lw", Recorder("lw"))
        elif arm == "minimal":
            steps = args.train // 8 * args.minimal_epochs
            arms[arm] = minimal_loop(data, cfg.model.name, 520, 480, args.minimal_epochs, max(1, steps // 12),
                                     "minimal")  # fmt: skip
        elif arm == "minimal-sized":
            steps = args.train // 8 * args.minimal_epochs
            arms[arm] = minimal_loop(data, cfg.model.name, height, cfg.data.crop, args.minimal_epochs,
                                     max(1, steps // 12), "minimal-sized")  # fmt: skip
        print(f"{arm}: {time.perf_counter() - started:.0f} s", flush=True)
    return {
        "plan": cfg.description, "model_reason": reason, "threads": threads, "load_before": args.load_before,
        "load_after": os.getloadavg()[0], "arms": {k: {"points": v.points, "losses": v.losses[:: max(1, len(
            v.losses) // 200)]} for k, v in arms.items()},
    }  # fmt: skip


def table(result: dict[str, Any]) -> str:
    arms = result["arms"]
    # the minimal loop's final mIoU: the reference-sized arm's, else (when only it ran) the data-sized one's
    baseline = next((arm for arm in ("minimal", "minimal-sized") if arm in arms and arms[arm]["points"]), None)
    target = arms[baseline]["points"][-1]["miou"] if baseline else None
    lines = [f"| arm | final val mIoU | best | wall time | time to {baseline or 'the minimal loop'}'s final mIoU |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, arm in arms.items():
        points = arm["points"]
        if not points:
            continue
        best = max(p["miou"] or 0 for p in points)
        hit = reached(points, target) if target is not None else None
        hit_text = "no minimal arm ran" if target is None else f"{hit:.0f} s" if hit is not None else "not reached"
        lines.append(f"| {name} | {points[-1]['miou']:.3f} | {best:.3f} | {points[-1]['seconds']:.0f} s | {hit_text} |")
    return "\n".join(lines)


def stability(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from refine_cli.models.registry import list_models

    height, width = (int(v) for v in args.size.split("x"))
    data = prepare(work, args.train, args.val, height, width)
    models = list_models() if args.models == "all" else args.models.split(",")
    rows = []
    for model in models:
        extra = {"model.name": model, "model.pretrained_backbone": False, "train.save_every_minutes": 0}
        cfg, _ = default_config(data, work / model, extra)
        cfg.data.val_split = None
        recorder = run_trainer(cfg, work / model, Recorder(model, stop_after=args.steps))
        losses = recorder.losses
        finite = all(math.isfinite(v) for v in losses)
        row = {"model": model, "steps": len(losses), "first": losses[0], "last": float(np.mean(losses[-5:])),
               "max": max(losses), "finite": finite, "warmup": cfg.optim.warmup_iters, "crop": cfg.data.crop,
               "batch": cfg.data.batch}  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--val", type=int, default=16)
    parser.add_argument("--size", default="96x128")
    parser.add_argument("--arms", default="default,minimal-sized,minimal,lw")
    parser.add_argument("--lw-epochs", type=int, default=30)
    parser.add_argument("--minimal-epochs", type=int, default=30, help="the reference's default: 30")
    parser.add_argument("--stability", action="store_true")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--models", default="all")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="refine-convergence-") as folder:
        work = Path(folder)
        if args.stability:
            result: Any = stability(args, work)
        else:
            result = convergence(args, work)
            print(table(result))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
