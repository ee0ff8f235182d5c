"""One CPU run, one table: the official way vs refine (PyTorch, ONNX Runtime, OpenVINO; fp32, bf16, int8) vs peers.

    .venv/bin/python tools/bench_side_by_side.py [--threads 2] [--iters 10] [--size 512] [--out table.md]
                                                 [--no-peers] [--only SUBSTRING ...]

Rows: LW-RefineNet-50 and LW-MobileNetV2 run the official way (tools/bench_cpu_levers.py `official`:
NCHW eager, BN not folded, ATen max-pool, glibc defaults, each in its own process), then `refine bench`
for both models and two torchvision peers, all in this one invocation: fp32 with `--runtime torch
--runtime onnxruntime`, fp32 with `--compile` (refine models only), and `--precision bf16` eager and
compiled (bf16 is not bit-exact: it is reported in columns of its own, and the ratios are given for the
fastest exact fp32 path and for the fastest path of all), then OpenVINO f32 and bf16 (`--runtime openvino`)
and int8 under ONNX Runtime and OpenVINO (`--precision int8`: the exported graph quantised with random
calibration, so these columns are timings only; what int8 costs in accuracy is measured on a trained
model with `refine export --int8`, docs/benchmarks.md). Timed: forward + upsample to the input + argmax,
batch 1. The 1-minute load average is recorded before and after, so a busy machine shows.
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


# (column title, extra `refine bench` arguments, models it runs, exact fp32?)
COLUMNS = (
    ("refine, PyTorch", ["--runtime", "torch"], (*MODELS, *PEERS), True),
    ("refine, ONNX Runtime", ["--runtime", "onnxruntime"], (*MODELS, *PEERS), True),
    ("refine, PyTorch --compile", ["--compile"], MODELS, True),
    ("refine, PyTorch bf16", ["--precision", "bf16"], (*MODELS, *PEERS), False),
    ("refine, PyTorch bf16 --compile", ["--precision", "bf16", "--compile"], MODELS, False),
    ("refine, OpenVINO", ["--runtime", "openvino"], (*MODELS, *PEERS), True),
    ("refine, OpenVINO bf16", ["--runtime", "openvino", "--precision", "bf16"], MODELS, False),
    ("refine, ONNX Runtime int8", ["--runtime", "onnxruntime", "--precision", "int8"], MODELS, False),
    ("refine, OpenVINO int8", ["--runtime", "openvino", "--precision", "int8"], MODELS, False),
)


def refine_bench(threads: int, iters: int, size: int, extra: list[str], models: tuple[str, ...]) -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "bench.json"
        command = [sys.executable, "-m", "refine_cli", "bench", "--device", "cpu", "--channels-last"]
        command += ["--threads", str(threads), "--size", str(size), "--warmup", "3", "--iters", str(iters)]
        command += [*extra, "--json", str(report)]
        for model in models:
            command += ["-m", model]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        data = json.loads(report.read_text())
    return data["results"] if isinstance(data, dict) else data


def _cell(ms: dict | None) -> str:
    return f"{ms['p50']:.1f} ({ms['min']:.1f})" if ms else "-"


def table(official_rows: dict[str, dict], columns: dict[str, dict[str, dict]], loads: tuple[float, float]) -> str:
    """`columns`: column title -> model -> latency_ms."""
    exact = [title for title, _, _, is_exact in COLUMNS if is_exact and title in columns]
    titles = ["official way (NCHW eager)", *columns, "official / fastest exact", "official / fastest"]
    lines = [
        f"1-minute load average {loads[0]:.2f} before, {loads[1]:.2f} after (2 vCPUs); ms per image, p50 (min); "
        "int8 columns: random calibration (timing only)",
        "",
        "| model | " + " | ".join(titles) + " |",
        "|---" * (len(titles) + 1) + "|",
    ]
    for model in sorted({model for by_model in columns.values() for model in by_model}, key=_row_order):
        base = official_rows.get(model)
        cells = [f"{base['wall_ms_p50']:.1f} ({base['wall_ms_min']:.1f})" if base else "-"]
        cells += [_cell(by_model.get(model)) for by_model in columns.values()]
        for titles_in in (exact, list(columns)):
            times = [columns[t][model]["p50"] for t in titles_in if model in columns.get(t, {})]
            cells.append(f"**{base['wall_ms_p50'] / min(times):.1f}x**" if base and times else "-")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _row_order(model: str) -> int:
    order = (*MODELS, *PEERS)
    return order.index(model) if model in order else len(order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--no-peers", action="store_true", help="only the two refine models")
    parser.add_argument("--only", nargs="*", default=[], help="only columns whose title contains one of these")
    args = parser.parse_args()
    before = os.getloadavg()[0]
    official_rows = {model: official(model, args.threads, args.iters) for model in MODELS}
    columns: dict[str, dict[str, dict]] = {}
    for title, extra, models, _ in COLUMNS:
        if args.only and not any(part in title for part in args.only):
            continue
        models = tuple(model for model in models if model in MODELS or not args.no_peers)
        rows = refine_bench(args.threads, args.iters, args.size, extra, models)
        columns[title] = {row["model"]: row["latency_ms"] for row in rows}
    text = table(official_rows, columns, (before, os.getloadavg()[0]))
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
