"""CPU threads for training and evaluation, on a quiet machine and under load: what refine's default should be.

    .venv/bin/python tools/bench_threads.py [--repeats 3] [--iters 30] [--threads 1,2,default] [--out FILE]

Runs the demo's training (`refine train --recipe demo-shapes` on `refine prepare shapes`, 2 data-loader
workers) for --iters steps and `refine eval` of the result on the 80 val images, each as its own
process, once per thread setting ("default" is refine's rule, i.e. no --threads), with the machine as it
is ("as found") and with LOAD_PROCESSES busy processes added ("loaded": two CPU-bound jobs beside the
run, as on a shared machine). Reports train img/s (refine's own count) and eval wall seconds, with the
1-minute load average before each run; every cell is repeated --repeats times, interleaved.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOAD_PROCESSES = 2


def _spin() -> None:
    while True:
        pass


def refine(*args: str, passive: bool = False) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    if passive:  # OpenMP threads that sleep at a barrier instead of spinning
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return [sys.executable, "-m", "refine_cli", *args], env


def one_run(work: Path, setting: str, iters: int, index: str) -> dict:
    """`setting`: a thread count, "default" (no --threads), either with "+passive" (OMP_WAIT_POLICY=PASSIVE)."""
    count, _, variant = setting.partition("+")
    threads = [] if count == "default" else ["--threads", count]
    passive = variant == "passive"
    run = work / f"run-{count}-{variant}-{index}"
    command, env = refine("train", "--recipe", "demo-shapes", "--data", str(work / "shapes"), "--out", str(run),
                          "--iters", str(iters), "--val-split", "none", "--json", str(run) + ".json", *threads,
                          passive=passive)  # fmt: skip
    load = os.getloadavg()[0]
    subprocess.run(command, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    train = json.loads(Path(str(run) + ".json").read_text())["images_per_second"]
    command, env = refine("eval", "--checkpoint", str(run / "last.pt"), "--data", str(work / "shapes"),
                          "--device", "cpu", *threads, passive=passive)  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"train_img_s": train, "eval_s": time.perf_counter() - started, "load_before": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--threads", default="1,2,default")
    parser.add_argument("--conditions", default="as found,loaded")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    settings = args.threads.split(",")
    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="refine-threads-") as folder:
        work = Path(folder)
        command, env = refine("prepare", "shapes", "--root", str(work))
        subprocess.run(command, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
        for condition in args.conditions.split(","):
            spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(LOAD_PROCESSES)]
            if condition == "loaded":
                for spinner in spinners:
                    spinner.start()
            try:
                for repeat in range(args.repeats):
                    for setting in settings:
                        row = one_run(work, setting, args.iters, f"{condition.replace(' ', '-')}-{repeat}")
                        results.setdefault(condition, {}).setdefault(setting, []).append(row)
                        print(condition, setting, json.dumps(row), flush=True)
            finally:
                for spinner in spinners:
                    if spinner.is_alive():
                        spinner.terminate()
    print("| condition | threads | train img/s (median, min-max) | eval s (median, min-max) | load before |")
    print("|---|---|---|---|---|")
    for condition, by_setting in results.items():
        for setting, rows in by_setting.items():
            train = [r["train_img_s"] for r in rows]
            evals = [r["eval_s"] for r in rows]
            loads = [r["load_before"] for r in rows]
            print(f"| {condition} | {setting} | {statistics.median(train):.1f} ({min(train):.1f}-{max(train):.1f}) | "
                  f"{statistics.median(evals):.1f} ({min(evals):.1f}-{max(evals):.1f}) | "
                  f"{min(loads):.1f}-{max(loads):.1f} |")  # fmt: skip
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
