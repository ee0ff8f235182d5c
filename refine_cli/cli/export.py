"""`refine export`: a checkpoint as an ONNX file that predicts on its own, verified against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from refine_cli.cli._console import emit_json, err, out, tagged
from refine_cli.cli._options import JsonOpt, parse_size


def export_command(
    checkpoint: Path = typer.Argument(..., help="refine checkpoint to export."),
    format_: str = typer.Option("onnx", "--format", help="Output format (onnx)."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Where to write the model, e.g. model.onnx."),
    opset: Optional[int] = typer.Option(  # noqa: UP045 - typer evaluates this at runtime
        None, "--opset", min=7, help="ONNX opset (default: the exporter's own, 20 with torch 2.14)."
    ),
    static: Optional[str] = typer.Option(  # noqa: UP045
        None, "--static", metavar="HxW", help="Fix height and width (default: any size, odd ones included)."
    ),
    fp16: bool = typer.Option(False, "--fp16", help="fp16 weights and activations (fp32 input and output)."),
    tolerance: Optional[float] = typer.Option(  # noqa: UP045
        None, "--tolerance", min=0.0, help="Max abs logit difference to PyTorch accepted (1e-3; fp16 5e-2)."
    ),
    json_out: JsonOpt = None,
) -> None:
    """Export with BN folded and the checkpoint's classes, palette and normalisation inside the file."""
    from refine_cli.engine.infer.export import export_checkpoint
    from refine_cli.errors import RefineError
    from refine_cli.guards import refuse_output_over_inputs

    if format_.lower() != "onnx":
        raise RefineError(f"unknown export format {format_!r}", hint="use --format onnx")
    refuse_output_over_inputs({"--out": out_path, "--json": json_out}, {"checkpoint": checkpoint})
    static_size = parse_size(static, "--static") if static else None
    err.print(f"exporting {checkpoint} to ONNX (torch.onnx dynamo exporter; this takes a few seconds) ...")
    report = export_checkpoint(checkpoint, out_path, opset=opset, static=static_size, fp16=fp16, tolerance=tolerance)
    if json_out is not None:
        emit_json(report.to_json(), json_out)
        if json_out == "-":
            return
    size = "x".join(map(str, report.static_size)) if report.static_size else "any HxW"
    checks = ", ".join(f"{key} {value:.2g}" for key, value in report.max_abs_diff.items())
    out.print(tagged("exported", "bold", f"{report.checkpoint} -> {report.out} ({report.bytes / 2**20:.1f} MiB)"))
    out.print(f"  model        {report.model} ({report.num_classes} classes), BN folded: {report.bn_folded}")
    out.print(f"  graph        opset {report.opset}, {report.precision}, input {size} (dynamic {report.dynamic})")
    out.print(f"  onnxruntime  max |ONNX - PyTorch| logit: {checks} (tolerance {report.tolerance:g})")
    out.print(f"use it with: refine predict IMAGES --checkpoint {report.out} --out preds")


def register(app: typer.Typer) -> None:
    """Attach `refine export`."""
    epilog = (
        "Examples:\n\n  refine export runs/voc/best.pt --format onnx --out voc.onnx\n"
        "  refine export best.pt --out best-512.onnx --static 512x512 --fp16 --json"
    )
    app.command("export", epilog=epilog)(export_command)
