"""`refine prepare shapes`: the synthetic dataset for demos, tests and CPU-only experiments."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from refine_cli.cli._console import emit_json, err, out
from refine_cli.cli._options import JsonOpt
from refine_cli.cli._paths import default_root
from refine_cli.cli._prepare_common import RootOpt


def shapes_command(
    root: RootOpt = None,
    n: Annotated[int, typer.Option("--n", min=2, help="Number of images (80% train, 20% val).")] = 400,
    size: Annotated[int, typer.Option("--size", min=32, max=2048, help="Image side in pixels.")] = 128,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Same seed, byte-identical images and labels.")] = 0,
    workers: Annotated[
        int, typer.Option("--workers", "-j", min=1, help="Drawing processes (same files for any count).")
    ] = 1,
    json_out: JsonOpt = None,
) -> None:
    """Synthetic shapes (6 classes: background, circle, square, triangle, ellipse, star), drawn locally."""
    from refine_cli.data.convert.shapes import generate_shapes
    from refine_cli.guards import refuse_output_over_inputs

    target = root or default_root()
    refuse_output_over_inputs({"--json": json_out}, {"dataset folder": target / "shapes"})
    start = time.perf_counter()
    bar = None
    if err.is_terminal:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="shapes", unit=" img", leave=False)
    path = generate_shapes(
        target,
        n=n,
        size=size,
        seed=seed,
        progress=(lambda done, total: bar.update(done - bar.n)) if bar else None,
        workers=workers,
    )
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    n_val = len((path / "splits" / "val.txt").read_text().split())
    result = {"dataset": "shapes", "path": str(path), "train": n - n_val, "val": n_val, "size": size, "seed": seed}
    if json_out is not None:
        emit_json({**result, "seconds": round(seconds, 3)}, json_out)
        if json_out == "-":
            return
    out.print(f"wrote shapes to {path}: {n - n_val} train / {n_val} val images of {size}x{size} in {seconds:.1f} s")


def register(prepare_app: typer.Typer) -> None:
    """Attach `shapes` to the `refine prepare` sub-app."""
    examples = "Examples:\n\n  refine prepare shapes --root data\n  refine prepare shapes --n 40 --size 64 --root data"
    prepare_app.command("shapes", epilog=examples)(shapes_command)
