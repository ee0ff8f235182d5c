"""`refine convert`: import official weights as a refine checkpoint.

`--from official` (default): the LW-RefineNet / RefineNet-PyTorch state_dicts (`--model` names the
architecture). `--from matconvnet`: a model file of the original MATLAB release (guosheng/refinenet,
`refinenet_res{101,152}_<dataset>.mat`); architecture, dataset and classes come from the file.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from refine_cli.cli._console import emit_json, out, tagged
from refine_cli.cli._options import JsonOpt


class SourceFormat(str, Enum):
    """Where the weights come from."""

    official = "official"
    matconvnet = "matconvnet"


def convert_command(
    src: Path = typer.Argument(
        ..., help="Official checkpoint (.pth/.pth.tar/.pt), or with --from matconvnet a refinenet_res*.mat file."
    ),
    out_path: Path = typer.Option(..., "--out", "-o", help="Where to write the refine checkpoint."),
    source_format: SourceFormat = typer.Option(
        SourceFormat.official,
        "--from",
        help="official: LW-RefineNet / RefineNet-PyTorch state_dicts; matconvnet: the MATLAB release's .mat models.",
    ),
    model: Optional[str] = typer.Option(  # noqa: UP045 - typer evaluates this at runtime
        None, "--model", "-m", help="Architecture the weights are for (see `refine models`); read from a .mat file."
    ),
    num_classes: Optional[int] = typer.Option(  # noqa: UP045
        None, "--num-classes", min=1, help="Expected number of classes (checked against the classifier)."
    ),
    dataset: Optional[str] = typer.Option(  # noqa: UP045
        None,
        "--dataset",
        help="--from matconvnet: the dataset the model was trained on (voc, cityscapes, nyudv2, person-part, "
        "context, sunrgbd, ade20k); default: told by the classifier's outputs.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    json_out: JsonOpt = None,
) -> None:
    """Convert weights strictly: every key mapped, every shape checked, written atomically."""
    from refine_cli.errors import RefineError
    from refine_cli.guards import refuse_output_over_inputs

    what = "MatConvNet model" if source_format is SourceFormat.matconvnet else "source checkpoint"
    refuse_output_over_inputs({"--out": out_path, "--json": json_out}, {what: src})
    if source_format is SourceFormat.matconvnet:
        _convert_matconvnet(src, out_path, model, num_classes, dataset, force, json_out)
        return
    if model is None:
        hint = "a .mat file is a MATLAB model: add --from matconvnet" if src.suffix.lower() == ".mat" else (
            "e.g. --model lw-refinenet-50")  # fmt: skip
        raise RefineError("--model is required with --from official", hint=hint)
    if dataset is not None:
        raise RefineError("--dataset is for --from matconvnet", hint="drop --dataset")
    from refine_cli.models.convert import convert_official

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


def _convert_matconvnet(
    src: Path,
    out_path: Path,
    model: str | None,
    num_classes: int | None,
    dataset: str | None,
    force: bool,
    json_out: str | None,
) -> None:
    """The MATLAB release: read, map, check against refine's RefineNet, write; then say what was checked."""
    from refine_cli.data.convert.datasets.tables import public_class_table
    from refine_cli.models.matconvnet_import import convert_matconvnet

    report = convert_matconvnet(
        src, out_path, public_class_table, dataset=dataset, overwrite=force, expect_model=model,
        expect_classes=num_classes,
    )  # fmt: skip
    if json_out is not None:
        emit_json(report.to_json(), json_out)
        if json_out == "-":
            return
    void = f"void output {report.void_output} dropped" if report.void_output is not None else "no void output"
    options = ", ".join(f"{key}={value}" for key, value in report.architecture.items())
    out.print(tagged("converted", "bold", f"{report.source} -> {report.out}"))
    out.print(f"  model        {report.model} ({options})")
    out.print(f"  layout       {report.layout}")
    out.print(f"  classes      {report.num_classes} ({report.dataset}; {void})")
    out.print("  input        RGB 0-255 minus 128 (stored in the checkpoint)")
    out.print(f"  parameters   {report.params:,} from {report.source_params} arrays")
    out.print(tagged("note:", "yellow", report.checked))
    out.print(f"sha256 {report.source_sha256}  {Path(report.source).name}")
    out.print(f"use it with: refine predict --checkpoint {report.out} ... --msc refinenet --upsample bicubic")


def register(app: typer.Typer) -> None:
    """Attach `refine convert`."""
    epilog = (
        "Examples:\n\n  refine convert rf_lw50_voc.pth.tar --model lw-refinenet-50 --out lw50-voc.pt\n"
        "  refine convert refinenet101_voc.pth --model refinenet-101 --out rn101-voc.pt --force\n"
        "  refine convert --from matconvnet refinenet_res101_voc2012.mat --out rn101-voc-matlab.pt"
    )
    app.command("convert", epilog=epilog)(convert_command)
