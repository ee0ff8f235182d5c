"""Inference benchmark: latency distribution, throughput, memory and MACs of one or more models.

Methodology (docs/evaluation.md section 4): random input pre-allocated on the device (no data loading, no
host-to-device copy), eval mode with BN folded, `torch.inference_mode()`, explicit warm-up, then one
timing per iteration: CUDA events with a synchronisation per iteration on the GPU, `time.perf_counter`
on the CPU. By default the timed step is what a user of `predict` waits for: forward, bilinear
upsampling of the logits to the input size, argmax. Everything that changes speed is recorded.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from refine_cli.devices import resolve_device
from refine_cli.engine.bench.complexity import MAC_UNIT_NOTE, measure
from refine_cli.engine.bench.cpu_tuning import allocator_tuned
from refine_cli.engine.bench.memory import PeakMemory
from refine_cli.engine.bench.runtimes import EXPORTED_RUNTIMES, check_runtimes, checkpoint_job
from refine_cli.engine.infer.model_prep import (
    autocast_context,
    check_precision,
    compile_for_inference,
    prepare_for_inference,
    tf32_flags,
    tf32_mode,
)
from refine_cli.errors import RefineError
from refine_cli.threads import apply_threads, usable_cpus

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class BenchSettings:
    """Everything that defines one benchmark measurement (recorded in the JSON report)."""

    height: int = 512
    width: int = 512
    batch: int = 1
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"
    warmup: int = 10
    iters: int = 50
    device: str = "auto"
    fold_bn: bool = True
    postprocess: bool = True
    cudnn_benchmark: bool = False
    threads: int | None = None
    num_classes: int = 21


def validate(settings: BenchSettings, device: torch.device) -> None:
    """Reject settings that would give a meaningless or NaN result."""
    if settings.iters < 2:
        raise RefineError(f"--iters {settings.iters} is too few", hint="use at least 2 (100+ for published numbers)")
    if settings.warmup < 0:
        raise RefineError(f"--warmup {settings.warmup} is negative", hint="use 0 or more warm-up iterations")
    if settings.batch < 1:
        raise RefineError(f"--batch {settings.batch} must be at least 1")
    if settings.threads is not None and settings.threads < 1:
        raise RefineError(f"--threads {settings.threads} must be at least 1")
    if settings.compile_mode not in COMPILE_MODES:
        raise RefineError(f"unknown compile mode {settings.compile_mode!r}", hint="use " + ", ".join(COMPILE_MODES))
    if settings.precision != "int8":  # int8 is a graph (checked per runtime), not an autocast mode
        check_precision(settings.precision, device)


def latency_stats(times_ms: list[float]) -> dict[str, float]:
    """mean, std (sample), min, p50, p90, p99, max of per-iteration latencies in ms."""
    if len(times_ms) < 2:
        raise ValueError("need at least two timings")
    ordered = sorted(times_ms)

    def percentile(q: float) -> float:  # linear interpolation, as numpy's default
        position = (len(ordered) - 1) * q
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    return {
        "mean": statistics.fmean(ordered),
        "std": statistics.stdev(ordered),
        "min": ordered[0],
        "p50": percentile(0.50),
        "p90": percentile(0.90),
        "p99": percentile(0.99),
        "max": ordered[-1],
    }


def time_steps(step: Callable[[], object], iters: int, device: torch.device) -> list[float]:
    """Per-iteration latency in ms: CUDA events (synchronised each iteration) or perf_counter."""
    times: list[float] = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(iters):
            begin = time.perf_counter()
            step()
            times.append((time.perf_counter() - begin) * 1000.0)
    return times


def build_model(name: str, num_classes: int) -> nn.Module:
    """A registered refine model or a `tv:` peer, randomly initialised (nothing downloaded)."""
    from refine_cli.models import create_model

    return create_model(name, num_classes=num_classes)


def _make_step(model: nn.Module, x: torch.Tensor, settings: BenchSettings, device: torch.device) -> Callable:
    size = (settings.height, settings.width)

    def step() -> torch.Tensor:
        with torch.inference_mode(), autocast_context(settings.precision, device):
            out = model(x)
            if settings.postprocess:
                if tuple(out.shape[-2:]) != size:
                    from refine_cli.models import upsample_logits

                    out = upsample_logits(out, size)
                out = out.argmax(1)
        return out

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class BenchResult:
    """One benchmarked model under one runtime: its cost, its latency and everything that changes them.

    `to_json()` is the row of `refine bench --json`; `settings` and `env` repeat the run's settings and
    machine in every row, so a row read alone is still comparable.
    """

    model: str
    label: str  # what the table and the plot call the row: the model, or `model (best.pt)` for a checkpoint
    runtime: str
    onnxruntime: dict[str, Any] | None
    checkpoint: str | None
    num_classes: int
    params: int
    gmacs: float
    mac_unit: str
    latency_ms: dict[str, float]
    fps: float
    peak_memory_mb: float | None
    peak_reserved_mb: float | None
    device: str
    precision: str
    batch: int
    size: list[int]
    channels_last: bool
    compile: bool
    compile_mode: str | None
    compile_time_s: float | None
    bn_folded: int
    timed: str
    timer: str
    warmup: int
    iters: int
    threads: int
    malloc_tuned: bool
    notes: list[str]
    cuda_flags: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None
    env: dict[str, Any] | None = None
    openvino: dict[str, Any] | None = None
    calibration: str | None = None  # int8 rows: "random (timing only)" or the file's own calibration

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _TimedStep:
    """A model made ready to time: the step to call, and what preparing it found."""

    step: Callable[[], object]
    bn_folded: int
    compile_time: float | None = None
    runtime_info: dict[str, Any] | None = None


def _prepare_step(
    builder: Callable[[], nn.Module] | None,
    settings: BenchSettings,
    device: torch.device,
    runtime: str,
    memory: PeakMemory,
    file: str | None = None,
) -> _TimedStep:
    """Build the model under `runtime` and return its timed step; the first (compiling) call is timed apart.

    `file` (a `refine export` .onnx file) is timed as it is, under ONNX Runtime or OpenVINO.
    """
    if runtime in EXPORTED_RUNTIMES:
        from refine_cli.engine.bench.onnx_timing import exported_step, file_step

        if file is not None:
            step, folded, info = file_step(file, settings, device, _make_step, runtime)
        else:
            step, folded, info = exported_step(builder(), settings, device, _make_step, runtime)  # type: ignore[misc]
        memory.reset_peak()
        return _TimedStep(step, folded, runtime_info=info)
    if builder is None:
        raise RefineError(f"{file} is an ONNX file; PyTorch cannot time it", hint="use --runtime onnxruntime/openvino")
    model, folded = prepare_for_inference(
        builder(), device, fold_bn=settings.fold_bn, channels_last=settings.channels_last
    )
    x = torch.randn(settings.batch, 3, settings.height, settings.width, device=device)
    if settings.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if settings.compile:
        torch.compiler.reset()
        model = compile_for_inference(model, settings.compile_mode)
    timed = _TimedStep(_make_step(model, x, settings, device), folded)
    memory.reset_peak()
    if settings.compile:  # the first call compiles: timed separately, never part of the latency
        begin = time.perf_counter()
        timed.step()
        _sync(device)
        timed.compile_time = time.perf_counter() - begin
    return timed


def _cpu_notes(settings: BenchSettings, runtime: str, threads: int) -> list[str]:
    """What a reader of CPU numbers must know: not comparable with GPUs, oversubscription, layout, load."""
    notes = [f"CPU run ({threads} threads, perf_counter timing): not a CUDA benchmark, do not compare with GPU numbers"]
    cpus = usable_cpus()
    if settings.threads and settings.threads > cpus:
        notes.append(
            f"--threads {settings.threads} exceeds the {cpus} CPUs: threads wait for each other; "
            "use at most one per core"
        )
    if not settings.channels_last and runtime == "torch":
        notes.append(
            "NCHW layout: on the CPU --channels-last is usually several times faster for these models "
            "(refine predict/eval/train use it there by default)"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > cpus * 0.75:
        advice = "try --threads 1, or rerun on an idle machine" if threads > 1 else "rerun on an idle machine"
        notes.append(
            f"the machine was busy (1-minute load {load:.1f} on {cpus} CPUs): threads compete with "
            f"other processes and timings spread; {advice}"
        )
    return notes


def benchmark_one(
    name: str,
    settings: BenchSettings,
    device: torch.device,
    builder: Callable[[], nn.Module] | None,
    counter: Callable[[], nn.Module] | None = None,
    checkpoint: str | None = None,
    num_classes: int | None = None,
    runtime: str = "torch",
    label: str | None = None,
    file_precision: str | None = None,
    calibration: str | None = None,
) -> BenchResult:
    """Benchmark the model that `builder` returns under `runtime`.

    `counter` builds the same architecture without weights (for MAC counting on the meta device).
    Under onnxruntime / openvino the BN-folded model is exported (dynamic HxW, as `refine export`) and
    the timed step is the runtime's inference plus the same upsample + argmax; `builder` None with a
    `checkpoint` .onnx file (of `file_precision`) times that file.
    """
    complexity = measure(counter or builder, settings.height, settings.width)  # type: ignore[arg-type]
    memory = PeakMemory(device)
    memory.start()
    timed = _prepare_step(builder, settings, device, runtime, memory, checkpoint if builder is None else None)
    timer_device = device if runtime == "torch" else torch.device("cpu")  # session.run returns host arrays
    for _ in range(settings.warmup):
        timed.step()
    _sync(timer_device)
    stats = latency_stats(time_steps(timed.step, settings.iters, timer_device))
    memory_mib = memory.result_mib()
    threads = timed.runtime_info["threads"] if timed.runtime_info else torch.get_num_threads()
    notes = _cpu_notes(settings, runtime, threads) if device.type == "cpu" else []
    notes += [memory.note] if memory.note else []
    precision = _row_precision(settings.precision, runtime, file_precision)
    if precision.startswith("int8") and calibration is None:
        from refine_cli.engine.bench.onnx_timing import RANDOM_CALIBRATION_NOTE

        calibration = RANDOM_CALIBRATION_NOTE
        notes.append(RANDOM_CALIBRATION_NOTE)
    return BenchResult(
        model=name, label=label or name, runtime=runtime, checkpoint=checkpoint, calibration=calibration,
        onnxruntime=timed.runtime_info if runtime == "onnxruntime" else None,
        openvino=timed.runtime_info if runtime == "openvino" else None,
        num_classes=num_classes or settings.num_classes, params=complexity.params, gmacs=round(complexity.gmacs, 3),
        mac_unit=MAC_UNIT_NOTE + "; per image at the benchmarked size",
        latency_ms={key: round(value, 4) for key, value in stats.items()},
        fps=round(settings.batch * 1000.0 / stats["mean"], 3),
        peak_memory_mb=memory_mib.get("peak_memory_mb"), peak_reserved_mb=memory_mib.get("peak_reserved_mb"),
        device=str(device), precision=precision, bn_folded=timed.bn_folded, threads=threads,
        compile_time_s=None if timed.compile_time is None else round(timed.compile_time, 3),
        malloc_tuned=allocator_tuned(), notes=notes, **_method(settings, runtime, timer_device),
    )  # fmt: skip


def _method(settings: BenchSettings, runtime: str, timer_device: torch.device) -> dict[str, Any]:
    """The fields of a row that say how it was timed (what the reader needs to reproduce it)."""
    return {
        "batch": settings.batch,
        "size": [settings.height, settings.width],
        "channels_last": settings.channels_last and runtime == "torch",
        "compile": settings.compile and runtime == "torch",
        "compile_mode": settings.compile_mode if settings.compile else None,
        "timed": "forward + upsample to input + argmax" if settings.postprocess else "forward only",
        "timer": "cuda events, synchronised per iteration" if timer_device.type == "cuda" else "time.perf_counter",
        "warmup": settings.warmup,
        "iters": settings.iters,
    }


def _row_precision(asked: str, runtime: str, file_precision: str | None) -> str:
    """What a row ran: the autocast / OpenVINO precision, or an .onnx file's own (int8 files: bf16 elsewhere)."""
    if file_precision is None:
        return asked
    if file_precision == "int8":
        return "int8 (bf16 elsewhere)" if runtime == "openvino" and asked == "bf16" else "int8"
    return "bf16" if runtime == "openvino" and asked == "bf16" else file_precision


def run_benchmarks(
    names: list[str],
    settings: BenchSettings,
    checkpoint: str | None = None,
    on_start: Callable[[str], None] | None = None,
    runtimes: Sequence[str] = (),
) -> list[BenchResult]:
    """Benchmark every model in `names` (and the checkpoint's model first, if given) under `settings`,
    once per runtime in `runtimes` (torch, onnxruntime, openvino): one row per model and runtime."""
    from refine_cli.envinfo import environment
    from refine_cli.models import model_info

    device = resolve_device(settings.device)
    validate(settings, device)
    asked = bool(runtimes)
    runtimes = check_runtimes(runtimes, settings)
    for name in names:  # fail on a bad name before spending minutes on the others
        model_info(name)
    jobs: list[dict[str, Any]] = [checkpoint_job(checkpoint, runtimes, settings, asked)] if checkpoint else []
    jobs += [{"name": name, "builder": _builder(name, settings.num_classes)} for name in names]
    if not jobs:
        raise RefineError("nothing to benchmark", hint="give --model NAME (repeatable) or --checkpoint CK")
    saved_threads, saved_cudnn = torch.get_num_threads(), torch.backends.cudnn.benchmark
    results = []
    try:
        apply_threads(settings.threads)  # --threads, else refine's one rule (refine_cli.threads)
        torch.backends.cudnn.benchmark = settings.cudnn_benchmark
        env = environment(str(device))
        # CUDA events record on the *current* device's stream: make it the benchmarked GPU (cuda:N too)
        on_device = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
        with tf32_mode(settings.precision == "tf32"):
            cuda_flags = {**tf32_flags(), "cudnn_benchmark": settings.cudnn_benchmark} if device.type == "cuda" else {}
        for job in jobs:
            for runtime in job.pop("runtimes", runtimes):
                if on_start:
                    on_start(job.get("label", job["name"]) + ("" if runtime == "torch" else f" ({runtime})"))
                # TF32 switches only around PyTorch rows: the ONNX exporter refuses half-set TF32 flags
                tf32 = tf32_mode(settings.precision == "tf32") if runtime == "torch" else contextlib.nullcontext()
                with on_device, tf32:
                    result = benchmark_one(settings=settings, device=device, runtime=runtime, **job)
                result.cuda_flags, result.settings, result.env = cuda_flags or None, asdict(settings), env
                results.append(result)
    finally:
        torch.set_num_threads(saved_threads)
        torch.backends.cudnn.benchmark = saved_cudnn
    return results


def _builder(name: str, num_classes: int) -> Callable[[], nn.Module]:
    return lambda: build_model(name, num_classes)
