"""`refine convert`: import an official LW-RefineNet / RefineNet checkpoint as a refine checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from refine_cli.cli._console import emit_json, out, tagged
from refine_cli.cli._options import JsonOpt


def convert_command(
    src: Path = typer.Argument(..., help="Official checkpoint (.pth/.pth.tar/.pt), plain or wrapped state_dict."),
    model: str = typer.Option(..., "--model", "-m", help="Architecture the weights are for (see `refine models`)."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Where to write the refine checkpoint."),
    num_classes: int | None = typer.Option(
        None, "--num-classes", min=1, help="Expected number of classes (checked against the classifier)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    json_out: JsonOpt = None,
) -> None:
    """Convert official weights strictly: every key mapped, every shape checked, written atomically."""
    from refine_cli.guards import refuse_output_over_inputs
    from refine_cli.models.convert import convert_official

    refuse_output_over_inputs({"--out": out_path, "--json": json_out}, {"source checkpoint": src})
    summary = convert_official(src, model, out_path, num_classes=num_classes, overwrite=force)
    if json_out is not None:
        emit_json(summary.to_json(), json_out)
        if json_out == "-":
            return
    out.print(tagged("converted", "bold", f"{summary.source} -> {summary.out}"))
    out.print(f"  model        {summary.model}")
    out.print(f"  classes      {summary.num_classes}")
    out.print(f"  parameters   {summary.params:,}")
    out.print(f"  source keys  {summary.source_keys} (sha256 {summary.source_sha256[:16]}...)")
    out.print(f"use it with: refine predict --checkpoint {summary.out} ... / refine bench --checkpoint ...")


def register(app: typer.Typer) -> None:
    """Attach `refine convert`."""
    epilog = (
        "Examples:\n\n  refine convert rf_lw50_voc.pth.tar --model lw-refinenet-50 --out lw50-voc.pt\n"
        "  refine convert refinenet101_voc.pth --model refinenet-101 --out rn101-voc.pt --force"
    )
    app.command("convert", epilog=epilog)(convert_command)
