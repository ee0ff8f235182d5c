"""`refine bench`: inference latency, throughput, memory and MACs, several models in one table."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from refine_cli.cli._console import emit_json, err, out, tagged
from refine_cli.cli._inference_opts import warn_if_slow_precision
from refine_cli.cli._options import JsonOpt, parse_size

if TYPE_CHECKING:
    from refine_cli.engine.bench.benchmark import BenchResult


ModelOpt = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer evaluates this at runtime
    typer.Option("--model", "-m", help="Model to time (repeatable): a `refine models` name or a tv: peer."),
]
CheckpointOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--checkpoint",
        metavar="PATH",
        help="Also time this refine checkpoint (.pt), or a `refine export` file (.onnx, e.g. int8) as it is.",
    ),
]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        metavar="fp32|tf32|bf16|fp16|int8",
        help="fp32 (strict, TF32 off), tf32 (CUDA), bf16 or fp16 (CUDA) autocast; bf16 also with --runtime "
        "openvino; int8: the exported graph quantised with random calibration (timing only; a calibrated file: "
        "--checkpoint q.onnx).",
    ),
]
CompileModeOpt = Annotated[
    str, typer.Option("--compile-mode", metavar="default|reduce-overhead|max-autotune", help="torch.compile's mode.")
]
PostprocessOpt = Annotated[
    bool,
    typer.Option("--postprocess/--forward-only", help="Time upsampling to input size + argmax too (default), or not."),
]
PlotOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--plot",
        metavar="FILE",
        help="Also draw latency against GMACs (or --plot-x params) into FILE.png (.svg, .pdf).",
    ),
]
ChannelsLastOpt = Annotated[bool, typer.Option("--channels-last", help="NHWC memory layout for model and input.")]
CompileOpt = Annotated[bool, typer.Option("--compile", help="torch.compile the model (compile time reported apart).")]
ItersOpt = Annotated[int, typer.Option("--iters", help="Timed iterations (at least 2; 100+ for published numbers).")]
ThreadsOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--threads", help="CPU threads (default: the CPUs this process may use)."),
]
FoldBnOpt = Annotated[bool, typer.Option("--fold-bn/--no-fold-bn", help="Fold BatchNorm into the convolutions.")]
CudnnOpt = Annotated[bool, typer.Option("--cudnn-benchmark", help="Let cuDNN pick algorithms per shape.")]
RuntimeOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--runtime",
        metavar="torch|onnxruntime|openvino",
        help="Repeatable: one row per model and runtime (default torch; for int8 onnxruntime and openvino).",
    ),
]


def bench_command(
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    size: Annotated[str, typer.Option("--size", help="Input size: 512 or HEIGHTxWIDTH (e.g. 468x625).")] = "512",
    batch: Annotated[int, typer.Option("--batch", help="Images per forward pass.")] = 1,
    precision: PrecisionOpt = "fp32",
    channels_last: ChannelsLastOpt = False,
    compile_: CompileOpt = False,
    compile_mode: CompileModeOpt = "default",
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed iterations before timing.")] = 10,
    iters: ItersOpt = 50,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    threads: ThreadsOpt = None,
    fold_bn: FoldBnOpt = True,
    postprocess: PostprocessOpt = True,
    cudnn_benchmark: CudnnOpt = False,
    num_classes: Annotated[int, typer.Option("--num-classes", help="Classes of the --model heads.")] = 21,
    plot: PlotOpt = None,
    plot_x: Annotated[str, typer.Option("--plot-x", metavar="gmacs|params", help="x axis of --plot.")] = "gmacs",
    runtime: RuntimeOpt = None,
    json_out: JsonOpt = None,
) -> None:  # fmt: skip
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
        list(model or []), settings, checkpoint=checkpoint, runtimes=list(runtime or []),
        on_start=lambda name: err.print(f"benchmarking {name} ..."),
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
