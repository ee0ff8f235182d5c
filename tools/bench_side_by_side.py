"""One CPU run, one table: the official way vs refine (PyTorch and ONNX Runtime) vs torchvision peers in both.

    .venv/bin/python tools/bench_side_by_side.py [--threads 2] [--iters 10] [--size 512] [--out table.md]

Rows: LW-RefineNet-50 and LW-MobileNetV2 run the official way (tools/bench_cpu_levers.py `official`:
NCHW eager, BN not folded, ATen max-pool, glibc defaults, each in its own process), then `refine bench`
with `--runtime torch --runtime onnxruntime` for both models and two torchvision peers, all in this one
invocation. Timed: forward + upsample to the input + argmax, batch 1. The 1-minute load average is
recorded before and after, so a busy machine shows in the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS = ("lw-refinenet-50", "lw-refinenet-mobilenetv2")
PEERS = ("tv:lraspp_mobilenet_v3_large", "tv:deeplabv3_mobilenet_v3_large")


def official(model: str, threads: int, iters: int) -> dict:
    command = [sys.executable, str(REPO / "tools" / "bench_cpu_levers.py"), "--one", f"{model}:official"]
    command += ["--threads", str(threads), "--iters", str(iters)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def refine_bench(threads: int, iters: int, size: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "bench.json"
        command = [str(Path(sys.executable).parent / "refine"), "bench", "--device", "cpu", "--channels-last"]
        command += ["--threads", str(threads), "--size", str(size), "--warmup", "3", "--iters", str(iters)]
        command += ["--runtime", "torch", "--runtime", "onnxruntime", "--json", str(report)]
        for model in (*MODELS, *PEERS):
            command += ["-m", model]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        data = json.loads(report.read_text())
    return data["results"] if isinstance(data, dict) else data


def table(official_rows: dict[str, dict], bench_rows: list[dict], loads: tuple[float, float]) -> str:
    lines = [
        f"1-minute load average {loads[0]:.2f} before, {loads[1]:.2f} after (2 vCPUs); ms per image, p50 (min)",
        "",
        "| model | official way (NCHW eager) | refine, PyTorch | refine, ONNX Runtime | official / fastest refine |",
        "|---|---|---|---|---|",
    ]
    by_key = {(row["model"], row.get("runtime", "torch")): row["latency_ms"] for row in bench_rows}
    for model in (*MODELS, *PEERS):
        torch_ms, ort_ms = by_key.get((model, "torch")), by_key.get((model, "onnxruntime"))
        cells = [f"{ms['p50']:.1f} ({ms['min']:.1f})" if ms else "-" for ms in (torch_ms, ort_ms)]
        base = official_rows.get(model)
        base_cell = f"{base['wall_ms_p50']:.1f} ({base['wall_ms_min']:.1f})" if base else "-"
        fastest = min(ms["p50"] for ms in (torch_ms, ort_ms) if ms)
        ratio = f"**{base['wall_ms_p50'] / fastest:.1f}x**" if base else "-"
        lines.append(f"| {model} | {base_cell} | {cells[0]} | {cells[1]} | {ratio} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    before = os.getloadavg()[0]
    official_rows = {model: official(model, args.threads, args.iters) for model in MODELS}
    bench_rows = refine_bench(args.threads, args.iters, args.size)
    text = table(official_rows, bench_rows, (before, os.getloadavg()[0]))
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
