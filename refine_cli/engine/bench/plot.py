"""`refine bench --plot FILE.png`: latency against compute (GMACs or parameters), the picture papers show.

Drawn from the JSON results of one `run_benchmarks` call, so every point was measured under the
same settings; those settings (device, size, batch, precision, layout, compile) go in the title.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from refine_cli.errors import RefineError
from refine_cli.figures import FIGURE_FORMATS, new_figure, save_figure
from refine_cli.models.registry import is_peer

if TYPE_CHECKING:
    from refine_cli.engine.bench.benchmark import BenchResult

PLOT_AXES = ("gmacs", "params")


def check_plot_path(path: str | Path) -> Path:
    """Refuse a plot file name refine cannot write (format, a folder) before any timing."""
    path = Path(path)
    if path.suffix.lower().lstrip(".") not in FIGURE_FORMATS:
        raise RefineError(f"cannot write a plot to {path}", hint="give a file name ending in .png, .svg or .pdf")
    if path.is_dir():
        raise RefineError(f"plot file {path} is a folder", hint="give a file name, e.g. bench.png")
    return path


def plot_title(first: BenchResult) -> str:
    """Device and settings of the run, in one or two lines."""
    env = first.env or {}
    hardware = env.get("gpu") or env.get("cpu") or first.device
    height, width = first.size
    layout = ", channels_last" if first.channels_last else ""
    compiled = ", compiled" if first.compile else ""
    return (
        f"{hardware} ({first.device}, {first.threads} threads)\n"
        f"{height}x{width}, batch {first.batch}, {first.precision}{layout}{compiled}; "
        f"timed: {first.timed}; {first.iters} iterations"
    )


def plot_benchmarks(results: list[BenchResult], path: str | Path, x_axis: str = "gmacs") -> Path:
    """Mean latency (error bar: std) against GMACs or parameters; refine models and peers marked apart."""
    if x_axis not in PLOT_AXES:
        raise RefineError(f"unknown plot axis {x_axis!r}", hint="use gmacs or params")
    figure = new_figure(7.5, 5.0)
    axes = figure.add_subplot()
    seen: set[str] = set()
    xs = []
    several_runtimes = len({row.runtime for row in results}) > 1
    for row in results:
        peer = is_peer(row.model)
        runtime = row.runtime
        kind = ("peer (torchvision)" if peer else "refine") + (f", {runtime}" if several_runtimes else "")
        x = row.gmacs if x_axis == "gmacs" else row.params / 1e6
        latency = row.latency_ms
        colour = "#888888" if peer else "#2a6fb0"
        axes.errorbar(
            x, latency["mean"], yerr=latency["std"], fmt="s" if peer else "o", capsize=3, markersize=7,
            color=colour, markerfacecolor="white" if runtime == "onnxruntime" else colour,
            label=None if kind in seen else kind,
        )  # fmt: skip
        seen.add(kind)
        xs.append(x)
        name = row.label + (f" [{runtime}]" if several_runtimes else "")
        axes.annotate(name, (x, latency["mean"]), textcoords="offset points", xytext=(6, 5), fontsize=8)
    positive = [value for value in xs if value > 0]
    if positive and max(positive) / min(positive) > 20:
        axes.set_xscale("log")
    axes.set_xlabel("GMACs per image" if x_axis == "gmacs" else "parameters (millions)")
    axes.set_ylabel("latency, ms (mean, bar: std)")
    axes.set_ylim(bottom=0)
    axes.margins(x=0.2)  # room for the labels of the outermost points
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")
    axes.set_title(plot_title(results[0]), fontsize=9)
    return save_figure(figure, path)
