"""CPU latency of the official way vs refine's levers (BN fold, channels_last, running-max pool, malloc tuning).

    .venv/bin/python tools/bench_cpu_levers.py -m lw-refinenet-mobilenetv2 -m lw-refinenet-50 [--threads 2]
        [--iters 10] [--configs official,before,pool,after,nchw]

Each (model, config) runs in its own process (the allocator setting is per process), timing forward +
bilinear upsampling to the input size + argmax on random 512x512 input, batch 1; one JSON line per run:
wall and CPU ms (min, p50) and minor page faults per forward. Configs:
  official  model built plainly, eval(), NCHW, BN not folded, torch.no_grad(), ATen max-pool, glibc defaults
  before    BN folded, channels_last, inference_mode, ATen max-pool, glibc defaults (refine bench before)
  pool      before + the CRP's running-max pool
  after     pool + malloc tuning: what `refine bench --channels-last` runs now
  nchw      after, but NCHW
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = ("official", "before", "pool", "after", "nchw")


def measure(model_name: str, config: str, threads: int, iters: int, size: int = 512) -> dict:
    """Time one configuration in this process (call once per process)."""
    from refine_cli.engine.bench.cpu_tuning import tune_allocator

    tuned = tune_allocator() if config in ("after", "nchw") else False
    import torch
    import torch.nn.functional as F

    from refine_cli.engine.infer.model_prep import prepare_for_inference
    from refine_cli.models import blocks, create_model

    torch.set_num_threads(threads)
    official = config == "official"
    if config in ("official", "before"):  # the ATen pool, as nn.MaxPool2d(5, 1, 2) in the official code
        blocks.MaxPool5x5.forward = lambda self, x: F.max_pool2d(x, 5, 1, 2)
    channels_last = config in ("before", "pool", "after")
    model = create_model(model_name, num_classes=21).eval()
    if not official:
        model, _ = prepare_for_inference(model, torch.device("cpu"), fold_bn=True, channels_last=channels_last)
    x = torch.randn(1, 3, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> torch.Tensor:
        with torch.no_grad() if official else torch.inference_mode():
            out = F.interpolate(model(x), size=(size, size), mode="bilinear", align_corners=False)
            return out.argmax(1)

    for _ in range(3):
        step()
    wall, cpu = [], []
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(iters):
        begin_wall, begin_cpu = time.perf_counter(), time.process_time()
        step()
        wall.append((time.perf_counter() - begin_wall) * 1e3)
        cpu.append((time.process_time() - begin_cpu) * 1e3)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before) / iters
    return {
        "model": model_name,
        "config": config,
        "threads": threads,
        "malloc_tuned": tuned,
        "wall_ms_min": round(min(wall), 1),
        "wall_ms_p50": round(statistics.median(wall), 1),
        "cpu_ms_min": round(min(cpu), 1),
        "cpu_ms_p50": round(statistics.median(cpu), 1),
        "page_faults_per_forward": round(faults),
        "load_1min": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", action="append", default=[])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: MODEL:CONFIG in this process
    args = parser.parse_args()
    if args.one:
        model_name, config = args.one.rsplit(":", 1)
        print(json.dumps(measure(model_name, config, args.threads, args.iters)), flush=True)
        return
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown or not args.model:
        parser.error(f"give -m MODEL and configs from {', '.join(CONFIGS)}" + (f" (not {unknown})" if unknown else ""))
    for model_name in args.model:
        for config in configs:
            command = [sys.executable, __file__, "--one", f"{model_name}:{config}"]
            command += ["--threads", str(args.threads), "--iters", str(args.iters)]
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
