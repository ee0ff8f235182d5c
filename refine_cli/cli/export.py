"""`refine export`: a checkpoint as an ONNX file that predicts on its own, verified against PyTorch; `--int8`
quantises it with the user's images and keeps it only if its mIoU holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from refine_cli.cli._console import emit_json, err, out, tagged, warn
from refine_cli.cli._options import JsonOpt, parse_size
from refine_cli.engine.infer.quantize import DEFAULT_CALIB_IMAGES, DEFAULT_MAX_DROP, DEFAULT_QUANTIZER

Int8Opt = Annotated[
    bool,
    typer.Option(
        "--int8",
        help="Quantise to int8 (QDQ, runs on ONNX Runtime and OpenVINO) with calibration images from --calib; "
        "fp32 and int8 are scored and the file is kept only if the mIoU drop is within --max-drop.",
    ),
]
CalibOpt = Annotated[
    Optional[str],  # noqa: UP045 - typer evaluates this at runtime
    typer.Option("--calib", metavar="PATH", help="Unified dataset (folder or name) to calibrate and score on."),
]
CalibSplitOpt = Annotated[str, typer.Option("--calib-split", help="Split whose images calibrate.")]
CalibImagesOpt = Annotated[int, typer.Option("--calib-images", min=1, help="Calibration images (a seeded sample).")]
EvalImagesOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--eval-images", min=1, help="Score on the first N images only (default: all of val)."),
]
MaxDropOpt = Annotated[
    float, typer.Option("--max-drop", min=0.0, help="Largest mIoU drop (points) int8 may cost before refusal.")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Write the int8 file even above --max-drop.")]
QuantizerOpt = Annotated[str, typer.Option("--quantizer", help="onnxruntime (default) or nncf.")]
EvalRuntimeOpt = Annotated[
    str, typer.Option("--runtime", help="Runtime that scores fp32 and int8: onnxruntime or openvino.")
]


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
    int8: Int8Opt = False,
    calib: CalibOpt = None,
    calib_split: CalibSplitOpt = "train",
    calib_images: CalibImagesOpt = DEFAULT_CALIB_IMAGES,
    eval_images: EvalImagesOpt = None,
    max_drop: MaxDropOpt = DEFAULT_MAX_DROP,
    force: ForceOpt = False,
    quantizer: QuantizerOpt = DEFAULT_QUANTIZER,
    runtime: EvalRuntimeOpt = "onnxruntime",
    json_out: JsonOpt = None,
) -> None:
    """Export with BN folded and the checkpoint's classes, palette and normalisation inside the file."""
    from refine_cli.engine.infer.export import export_checkpoint
    from refine_cli.errors import RefineError
    from refine_cli.guards import refuse_output_over_inputs

    if format_.lower() != "onnx":
        raise RefineError(f"unknown export format {format_!r}", hint="use --format onnx")
    refuse_output_over_inputs({"--out": out_path, "--json": json_out}, {"checkpoint": checkpoint, "--calib": calib})
    static_size = parse_size(static, "--static") if static else None
    int8_only = {"--calib": calib is not None, "--calib-split": calib_split != "train",
                 "--calib-images": calib_images != DEFAULT_CALIB_IMAGES, "--eval-images": eval_images is not None,
                 "--max-drop": max_drop != DEFAULT_MAX_DROP, "--force": force,
                 "--quantizer": quantizer != DEFAULT_QUANTIZER, "--runtime": runtime != "onnxruntime"}  # fmt: skip
    _refuse_int8_options(int8, int8_only, static_size is not None)
    int8_settings = _int8_settings(int8, fp16, calib, calib_split, calib_images, eval_images, max_drop, force,
                                   quantizer, runtime)  # fmt: skip
    err.print(f"exporting {checkpoint} to ONNX (torch.onnx dynamo exporter; this takes a few seconds) ...")
    if int8_settings is not None:
        from refine_cli.engine.eval.int8_gate import export_int8

        report = export_int8(checkpoint, out_path, int8_settings, opset=opset, tolerance=tolerance,
                             progress=err.is_terminal, notify=err.print, warn=warn)  # fmt: skip
    else:
        report = export_checkpoint(
            checkpoint, out_path, opset=opset, static=static_size, fp16=fp16, tolerance=tolerance
        )
    if json_out is not None:
        emit_json(report.to_json(), json_out)
        if json_out == "-":
            return
    _print_report(report)


def _print_report(report: Any) -> None:
    """What was written, how it was checked, and (int8) what the gate measured."""
    size = "x".join(map(str, report.static_size)) if report.static_size else "any HxW"
    checks = ", ".join(f"{key} {value:.2g}" for key, value in report.max_abs_diff.items())
    out.print(tagged("exported", "bold", f"{report.checkpoint} -> {report.out} ({report.bytes / 2**20:.1f} MiB)"))
    out.print(f"  model        {report.model} ({report.num_classes} classes), BN folded: {report.bn_folded}")
    out.print(f"  graph        opset {report.opset}, {report.precision}, input {size} (dynamic {report.dynamic})")
    checked = "fp32 graph" if report.quantization is not None else "onnxruntime"  # int8 is checked by its gate
    out.print(f"  {checked:<12} max |ONNX - PyTorch| logit: {checks} (tolerance {report.tolerance:g})")
    if report.quantization is not None:
        _print_int8(report.quantization)
    out.print(f"use it with: refine predict IMAGES --checkpoint {report.out} --out preds")


def _refuse_int8_options(int8: bool, int8_only: dict[str, bool], static: bool) -> None:
    """Options of `--int8` without it would silently do nothing; --static would fail after calibration."""
    from refine_cli.errors import RefineError

    given = [flag for flag, used in int8_only.items() if used]
    if given and not int8:
        raise RefineError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for --int8 exports",
                          hint=f"add --int8, or drop {', '.join(given)}")  # fmt: skip
    if int8 and static:
        raise RefineError(
            "--int8 calibrates and scores on your images at their own sizes; --static fixes one size",
            hint="drop --static (the int8 file takes any size)",
        )


def _int8_settings(
    int8: bool,
    fp16: bool,
    calib: str | None,
    calib_split: str,
    calib_images: int,
    eval_images: int | None,
    max_drop: float,
    force: bool,
    quantizer: str,
    runtime: str,
):  # noqa: ANN202 - Int8Settings | None, imported lazily
    """The --int8 options, checked (None without --int8, which refuses the options that need it)."""
    from refine_cli.errors import RefineError

    if not int8:
        return None
    if fp16:
        raise RefineError("--int8 and --fp16 are two precisions of one file", hint="choose one")
    if calib is None:
        raise RefineError(
            "--int8 needs calibration images from your data: --calib DATASET",
            hint="give a unified dataset (refine prepare ...), e.g. --calib data/voc --calib-split train",
        )
    from refine_cli.cli.eval import resolve_dataset
    from refine_cli.engine.eval.int8_gate import Int8Settings
    from refine_cli.engine.infer.quantize import QUANTIZERS

    if quantizer.lower() not in QUANTIZERS:
        raise RefineError(f"unknown --quantizer {quantizer!r}", hint="use " + " or ".join(QUANTIZERS))
    if runtime.lower() not in ("onnxruntime", "openvino"):
        raise RefineError(f"--runtime {runtime!r} cannot score an ONNX file", hint="use onnxruntime or openvino")
    _require_int8_tools(quantizer.lower(), runtime.lower())
    return Int8Settings(
        dataset=resolve_dataset(calib), calib_split=calib_split, calib_images=calib_images, eval_images=eval_images,
        max_drop=max_drop, force=force, quantizer=quantizer.lower(), runtime=runtime.lower(),
    )  # fmt: skip


def _require_int8_tools(quantizer: str, runtime: str) -> None:
    """A missing quantiser or scoring runtime is said now, not after the export and the calibration."""
    if runtime == "openvino":
        from refine_cli.engine.infer.openvino_backend import require_openvino

        require_openvino()
    if quantizer == "nncf":
        import importlib.util

        from refine_cli.errors import RefineError

        if importlib.util.find_spec("nncf") is None:
            raise RefineError("nncf is not installed", hint="pip install nncf, or use --quantizer onnxruntime")


def _print_int8(quantization: dict) -> None:
    numbers = quantization["evaluation"]
    calibration = quantization["calibration"]
    out.print(
        f"  int8         {quantization['quantizer']}, calibrated on {calibration['images']} image(s) of "
        f"{escape(calibration['dataset'])}/{escape(calibration['split'])}"
    )
    out.print(
        f"  accuracy     mIoU fp32 {numbers['miou_fp32']:.2f}, int8 {numbers['miou_int8']:.2f} "
        f"(drop {round(numbers['miou_drop'], 2) + 0.0:.2f} points, --max-drop {quantization['max_drop']:g}); "
        f"{100 * numbers['changed_pixels']:.2f}% of {numbers['pixels']:,} pixels changed label "
        f"({numbers['images']} image(s) of {escape(numbers['split'])}, {numbers['runtime']})"
    )
    if quantization["forced"]:
        out.print(tagged("warning:", "yellow", "written with --force although the drop is above --max-drop"))


def register(app: typer.Typer) -> None:
    """Attach `refine export`."""
    epilog = (
        "Examples:\n\n  refine export runs/voc/best.pt --format onnx --out voc.onnx\n"
        "  refine export best.pt --out best-512.onnx --static 512x512 --fp16 --json\n"
        "  refine export best.pt --int8 --calib data/voc --calib-images 200 --out best-int8.onnx"
    )
    app.command("export", epilog=epilog)(export_command)
