"""Collect the JSON files of one `tools/gpu_check.sh` run into one report: gpu_report.json + gpu_report.md.

    .venv/bin/python tools/gpu_report.py OUT_DIR [--json PATH] [--md PATH]

OUT_DIR holds what gpu_check.sh wrote: bench/*.json (each a list of `refine bench --json` rows),
train.json, eval.json, eval_bf16.json, predict.json, ddp.json (any may be missing: a failed or skipped step) and
steps.tsv (one line per step: name, exit status, seconds, note). The markdown has one latency table
per batch size (rows: model; columns: precision x compile mode), then the other steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

BENCH_FIELDS = (
    "model",
    "size",
    "precision",
    "batch",
    "compile_mode",
    "fps",
    "peak_memory_mb",
    "compile_time_s",
    "params",
)


class ReportError(Exception):
    """A run folder that cannot be reported (missing, or a JSON file that is not what a step writes)."""


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReportError(f"{path}: {error}") from None


def bench_rows(bench_dir: Path) -> list[dict[str, Any]]:
    """Every benchmark row of bench/*.json, reduced to what the tables show (plus latency)."""
    rows: list[dict[str, Any]] = []
    for path in sorted(bench_dir.glob("*.json")):
        data = read_json(path)
        if not isinstance(data, list):
            raise ReportError(f"{path}: expected the list that `refine bench --json` writes")
        for row in data:
            if not isinstance(row, dict) or "latency_ms" not in row or "model" not in row:
                raise ReportError(f"{path}: a row without model/latency_ms is not a refine bench row")
            reduced = {key: row.get(key) for key in BENCH_FIELDS}
            reduced["compile_mode"] = row.get("compile_mode") if row.get("compile") else "eager"
            reduced["latency_ms"] = row["latency_ms"]
            reduced["source"] = path.name
            rows.append(reduced)
    return rows


def read_steps(path: Path) -> list[dict[str, Any]]:
    """steps.tsv -> [{name, rc, seconds, note}] in run order."""
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        name, rc, seconds, *note = line.split("\t")
        steps.append({"name": name, "rc": int(rc), "seconds": float(seconds), "note": "\t".join(note)})
    return steps


def build_report(out_dir: Path) -> dict[str, Any]:
    """The whole run as one JSON-ready dict."""
    if not out_dir.is_dir():
        raise ReportError(f"{out_dir} is not a folder")
    bench_dir = out_dir / "bench"
    rows = bench_rows(bench_dir) if bench_dir.is_dir() else []
    env = None
    if rows:
        first = read_json(bench_dir / rows[0]["source"])[0]
        env = first.get("env")
    report: dict[str, Any] = {"env": env, "bench": rows, "steps": read_steps(out_dir / "steps.tsv")}
    for name in ("train", "eval", "eval_bf16", "predict", "ddp"):
        path = out_dir / f"{name}.json"
        report[name] = read_json(path) if path.is_file() else None
    return report


MODE_ORDER = ("eager", "default", "reduce-overhead", "max-autotune")
PRECISION_ORDER = ("fp32", "tf32", "bf16", "fp16")


def _variant(row: dict[str, Any]) -> str:
    return f"{row['precision']} {row['compile_mode']}"


def _variant_order(row: dict[str, Any]) -> tuple[int, int]:
    """Columns: eager before compiled, fp32 before the reduced precisions (whatever the file order)."""
    mode, precision = row["compile_mode"], row["precision"]
    return (
        MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER),
        PRECISION_ORDER.index(precision) if precision in PRECISION_ORDER else len(PRECISION_ORDER),
    )


def bench_tables(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: per batch size, mean latency in ms (and img/s) per model and variant."""
    lines: list[str] = []
    for batch in sorted({row["batch"] for row in rows}):
        subset = [row for row in rows if row["batch"] == batch]
        variants = list(dict.fromkeys(_variant(row) for row in sorted(subset, key=_variant_order)))
        models = list(dict.fromkeys(row["model"] for row in subset))
        cell = {(row["model"], _variant(row)): row for row in subset}
        lines += [f"### Batch {batch}: mean latency ms (images/s)", ""]
        lines.append("| model | " + " | ".join(variants) + " |")
        lines.append("|---|" + "---:|" * len(variants))
        for model in models:
            cells = []
            for variant in variants:
                row = cell.get((model, variant))
                cells.append("-" if row is None else f"{row['latency_ms']['mean']:.2f} ({row['fps']:.0f})")
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        compiled = [row for row in subset if row["compile_time_s"] is not None]
        if compiled:
            times = ", ".join(f"{row['model']} {_variant(row)} {row['compile_time_s']:.0f} s" for row in compiled)
            lines += ["", f"Compile time (first call, not in the latency): {times}."]
        lines.append("")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: environment, bench tables, train/eval/predict/DDP, step status."""
    env = report.get("env") or {}
    on_cpu = bool(env) and not env.get("gpu")  # `gpu_check.sh --cpu-smoke`
    title = "# GPU check plan, CPU smoke run (toy sizes: it proves the commands, it is no benchmark)"
    lines = [title if on_cpu else "# GPU check", ""]
    if env:
        lines += [
            f"{env.get('gpu') or env.get('cpu', '?')}; torch {env.get('torch', '?')}, CUDA {env.get('cuda', '?')}, "
            f"cuDNN {env.get('cudnn', '?')}, driver {env.get('driver', '?')}",
            "",
        ]
    if report["bench"]:
        sizes = ", ".join(dict.fromkeys("x".join(map(str, row["size"] or ["?"])) for row in report["bench"]))
        lines += [f"## Inference (refine bench, {sizes}, forward + upsample + argmax)", ""]
        lines += bench_tables(report["bench"])
    train = report.get("train")
    if train:
        lines += [
            "## Training step (shapes data)",
            "",
            f"{train.get('model')}: {train.get('steps')} steps in {train.get('train_seconds')} s, "
            f"{train.get('images_per_second')} images/s",
            "",
        ]
    for name, title in (("eval", "Eval (fp32)"), ("eval_bf16", "Eval (bf16 autocast)"), ("predict", "Predict")):
        data = report.get(name)
        if data:
            detail = f"mIoU {data['miou']:.4f}, " if data.get("miou") is not None else ""
            count = data.get("num_images", data.get("processed"))
            lines += [f"## {title}", "", f"{detail}{count} images in {data.get('seconds')} s", ""]
    ddp = report.get("ddp")
    if ddp:
        lines += [
            f"## DDP (2 processes, {'gloo' if on_cpu else 'NCCL'})",
            "",
            f"{ddp.get('steps')} steps, {ddp.get('images_per_second')} images/s over both "
            + ("processes" if on_cpu else "GPUs"),
            "",
        ]
    if report["steps"]:
        lines += ["## Steps", "", "| step | status | seconds | note |", "|---|---|---:|---|"]
        for step in report["steps"]:
            status = f"FAILED (exit {step['rc']})" if step["rc"] else "ok"
            if step["note"].startswith("skipped"):
                status = "skipped"
            lines.append(f"| {step['name']} | {status} | {step['seconds']:.0f} | {step['note']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="the folder gpu_check.sh wrote")
    parser.add_argument("--json", dest="json_path", type=Path, help="default: OUT_DIR/gpu_report.json")
    parser.add_argument("--md", dest="md_path", type=Path, help="default: OUT_DIR/gpu_report.md")
    args = parser.parse_args(argv)
    try:
        report = build_report(args.out_dir)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    json_path = args.json_path or args.out_dir / "gpu_report.json"
    md_path = args.md_path or args.out_dir / "gpu_report.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
