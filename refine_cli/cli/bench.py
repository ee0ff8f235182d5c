"""`refine bench`: inference latency, throughput, memory and MACs, several models in one table."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import typer

from refine_cli.cli._console import emit_json, err, out, tagged
from refine_cli.cli._inference_opts import warn_if_slow_precision
from refine_cli.cli._options import JsonOpt, parse_size

if TYPE_CHECKING:
    from refine_cli.engine.bench.benchmark import BenchResult


def bench_command(
    model: list[str] = typer.Option(
        [], "--model", "-m", help="Model to time (repeatable): a `refine models` name or a tv: peer."
    ),
    checkpoint: str | None = typer.Option(
        None,
        "--checkpoint",
        metavar="PATH",
        help="Also time this refine checkpoint (.pt), or a `refine export` file (.onnx, e.g. int8) as it is.",
    ),
    size: str = typer.Option("512", "--size", help="Input size: 512 or HEIGHTxWIDTH (e.g. 468x625)."),
    batch: int = typer.Option(1, "--batch", help="Images per forward pass."),
    precision: str = typer.Option(
        "fp32",
        "--precision",
        metavar="fp32|tf32|bf16|fp16|int8",
        help="fp32 (strict, TF32 off), tf32 (CUDA), bf16 or fp16 (CUDA) autocast; bf16 also with --runtime "
        "openvino; int8: the exported graph quantised with random calibration (timing only; a calibrated file: "
        "--checkpoint q.onnx).",
    ),
    channels_last: bool = typer.Option(False, "--channels-last", help="NHWC memory layout for model and input."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model (compile time reported apart)."),
    compile_mode: str = typer.Option(
        "default", "--compile-mode", metavar="default|reduce-overhead|max-autotune", help="torch.compile's mode."
    ),
    warmup: int = typer.Option(10, "--warmup", help="Untimed iterations before timing."),
    iters: int = typer.Option(50, "--iters", help="Timed iterations (at least 2; 100+ for published numbers)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: the CPUs this process may use)."),
    fold_bn: bool = typer.Option(True, "--fold-bn/--no-fold-bn", help="Fold BatchNorm into the convolutions."),
    postprocess: bool = typer.Option(
        True, "--postprocess/--forward-only", help="Time upsampling to input size + argmax too (default), or not."
    ),
    cudnn_benchmark: bool = typer.Option(False, "--cudnn-benchmark", help="Let cuDNN pick algorithms per shape."),
    num_classes: int = typer.Option(21, "--num-classes", help="Classes of the --model heads."),
    plot: str | None = typer.Option(
        None,
        "--plot",
        metavar="FILE",
        help="Also draw latency against GMACs (or --plot-x params) into FILE.png (.svg, .pdf).",
    ),
    plot_x: str = typer.Option("gmacs", "--plot-x", metavar="gmacs|params", help="x axis of --plot."),
    runtime: list[str] = typer.Option(
        [],
        "--runtime",
        metavar="torch|onnxruntime|openvino",
        help="Repeatable: one row per model and runtime (default torch; for int8 onnxruntime and openvino).",
    ),
    json_out: JsonOpt = None,
) -> None:
    """Time models on random input with explicit warm-up and per-iteration timing; print a comparison."""
    from refine_cli.devices import resolve_device
    from refine_cli.engine.bench.benchmark import BenchSettings, run_benchmarks
    from refine_cli.guards import refuse_output_over_inputs

    refuse_output_over_inputs({"--json": json_out, "--plot": plot}, {"--checkpoint": checkpoint})
    height, width = parse_size(size, "--size")
    _check_plot(plot, plot_x)
    settings = BenchSettings(
        height=height, width=width, batch=batch, precision=precision.lower(), channels_last=channels_last,
        compile=compile_, compile_mode=compile_mode, warmup=warmup, iters=iters, device=device, fold_bn=fold_bn,
        postprocess=postprocess, cudnn_benchmark=cudnn_benchmark, threads=threads, num_classes=num_classes,
    )  # fmt: skip
    warn_if_slow_precision(settings.precision, resolve_device(device))  # before the run it would slow down
    results = run_benchmarks(
        list(model), settings, checkpoint=checkpoint, on_start=lambda name: err.print(f"benchmarking {name} ..."),
        runtimes=runtime,
    )  # fmt: skip
    if plot is not None:
        from refine_cli.engine.bench.plot import plot_benchmarks

        err.print(f"wrote {plot_benchmarks(results, plot, plot_x)}")
    if json_out is not None:
        emit_json([result.to_json() for result in results], json_out)
        if json_out == "-":
            return
    _print_report(results)


def _check_plot(plot: str | None, plot_x: str) -> None:
    """A --plot file refine can write and a known --plot-x, before any timing."""
    if plot is None:
        return
    from refine_cli.engine.bench.plot import PLOT_AXES, check_plot_path
    from refine_cli.errors import RefineError

    check_plot_path(plot)
    if plot_x not in PLOT_AXES:
        raise RefineError(f"unknown --plot-x {plot_x!r}", hint="use gmacs or params")


def _print_report(results: list[BenchResult]) -> None:
    first = results[0]
    height, width = first.size
    title = (
        f"Inference on {first.device}: {height}x{width}, batch {first.batch}, {first.precision}"
        f"{', channels_last' if first.channels_last else ''}{', compiled' if first.compile else ''}"
    )
    # the widest set of columns that fits the terminal (--json always has everything): a number cut
    # to "6.…" says nothing, so narrow terminals drop columns; GMACs go last (`refine models` has them)
    mixed = len({row.precision for row in results}) > 1  # e.g. an int8 file beside fp32 models
    runtime = ["runtime"] if mixed or any(row.runtime != "torch" for row in results) else []
    compiled = ["compile s"] if first.compile else []
    candidates = [
        ["model", *runtime, "params", "GMACs", "mean ms", "std", "min", "p50", "p90", "p99", "FPS", "peak MiB"],
        ["model", *runtime, "GMACs", "mean ms", "p99", "FPS", "peak MiB"],
        ["model", *runtime, "mean ms", "p99", "FPS", "peak MiB"],
    ]
    unbounded = out.options.update(max_width=10_000)  # the width the table wants, not what it gets
    for columns in candidates:
        table = _bench_table(results, [*columns, *compiled], title)
        if out.measure(table, options=unbounded).maximum <= out.width:
            break
    out.print(table)  # the last candidate folds long model names where even it is too wide
    env = first.env
    hardware = env.get("gpu") or env["cpu"]
    versions = f"torch {env['torch']}, torchvision {env['torchvision']}, refine {env['refine']}"
    if env.get("git"):
        versions += f" (commit {env['git']['commit'][:10]}{', modified' if env['git']['dirty'] else ''})"
    if env.get("cuda"):
        versions += f", CUDA {env['cuda']}, cuDNN {env['cudnn']}, driver {env.get('driver') or 'unknown'}"
    ort = next((row.onnxruntime for row in results if row.onnxruntime), None)
    if ort:
        import onnxruntime

        opset = f", opset {ort['opset']}" if "opset" in ort else ""
        versions += f", onnxruntime {onnxruntime.__version__} ({ort['providers'][0]}{opset})"
    openvino = next((row.openvino for row in results if row.openvino), None)
    if openvino:
        versions += f", openvino {openvino['version']} (CPU)"
    out.print(f"{hardware}; {versions}; {first.threads} CPU threads")
    out.print(
        f"timed: {first.timed} ({first.timer}); warm-up {first.warmup}, {first.iters} iterations; "
        f"BN folded: {'yes' if first.bn_folded else 'no'}; GMACs per image (FLOPs = 2 x MACs)"
    )
    if first.cuda_flags:
        out.print("cuda: " + ", ".join(f"{key}={value}" for key, value in first.cuda_flags.items()))
    shown: set[str] = set()
    if mixed:
        out.print("precision per row in the runtime column; the title names the --precision asked for")
    for note in (note for row in results for note in row.notes):
        key = re.sub(r"[\d.]+", "#", note)  # the same note with another load figure is still the same note
        if key not in shown:
            shown.add(key)
            out.print(tagged("note:", "yellow", note))


def _bench_table(results: list[BenchResult], columns: list[str], title: str) -> Any:  # noqa: C901
    """One row per model and runtime; numbers never wrap, a model name folds only when nothing else fits."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        if column == "model":
            table.add_column(column, justify="left", overflow="fold")
        else:
            table.add_column(column, justify="right", no_wrap=True)
    for row in results:
        lat = row.latency_ms
        cells = {
            "model": row.label,
            "runtime": row.runtime if len({r.precision for r in results}) == 1 else f"{row.runtime}, {row.precision}",
            "params": f"{row.params / 1e6:.2f}M",
            "GMACs": f"{row.gmacs:.2f}",
            "mean ms": f"{lat['mean']:.2f}",
            "std": f"{lat['std']:.2f}",
            "min": f"{lat['min']:.2f}",
            "p50": f"{lat['p50']:.2f}",
            "p90": f"{lat['p90']:.2f}",
            "p99": f"{lat['p99']:.2f}",
            "FPS": f"{row.fps:.1f}",
            "peak MiB": "n/a" if row.peak_memory_mb is None else f"{row.peak_memory_mb:.0f}",
            "compile s": f"{row.compile_time_s or 0:.1f}",
        }
        table.add_row(*(cells[column] for column in columns))
    return table


def register(app: typer.Typer) -> None:
    """Attach `refine bench`."""
    epilog = (
        "Examples:\n\n  refine bench -m lw-refinenet-50 -m tv:deeplabv3_resnet50 --precision bf16 --channels-last\n"
        "  refine bench --checkpoint best.pt --size 468x625 --warmup 20 --iters 200 --json bench.json\n"
        "  refine bench -m lw-refinenet-mobilenetv2 --device cpu --channels-last --threads 2\n"
        "  refine bench -m lw-refinenet-50 -m lw-refinenet-mobilenetv2 -m tv:lraspp_mobilenet_v3_large --plot s.png\n"
        "  refine bench -m lw-refinenet-50 --runtime torch --runtime onnxruntime --channels-last --threads 2\n"
        "  refine bench -m lw-refinenet-mobilenetv2 --runtime openvino --precision bf16 --threads 2\n"
        "  refine bench -m lw-refinenet-mobilenetv2 --precision int8 --threads 2   (random calibration: timing only)\n"
        "  refine bench --checkpoint best-int8.onnx --runtime openvino --threads 2"
    )
    app.command("bench", epilog=epilog)(bench_command)
