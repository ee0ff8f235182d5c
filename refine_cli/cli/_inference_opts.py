"""Options shared by `refine eval` and `refine predict` (TTA, CRF, device), spelled once."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from refine_cli.cli._options import (
    OPTIONAL_VALUE_DEFAULTS,
    OPTIONAL_VALUE_EXAMPLES,
    OPTIONAL_VALUE_PATTERNS,
    parameters_of,
    parse_size,
    with_shared_options,
)
from refine_cli.engine.infer.tta import DEFAULT_MSC_SCALES, MSC_PRESETS, work_short_side
from refine_cli.errors import RefineError

if TYPE_CHECKING:
    from refine_cli.engine.infer.loop import InferenceConfig

DEFAULT_MSC = ",".join(f"{scale:g}" for scale in DEFAULT_MSC_SCALES)  # the TTA module's, spelled for the CLI
# `--msc` alone means the default scale set (see fill_optional_values in _options.py); a preset name counts.
OPTIONAL_VALUE_DEFAULTS.setdefault("--msc", DEFAULT_MSC)
OPTIONAL_VALUE_PATTERNS.setdefault(
    "--msc", re.compile(r"[0-9.,\s]*|" + "|".join(re.escape(name) for name in MSC_PRESETS), re.IGNORECASE)
)
OPTIONAL_VALUE_EXAMPLES.setdefault("--msc", "scales like 0.5,1,1.5 or a preset (" + ", ".join(MSC_PRESETS) + ")")

MscOpt = Annotated[
    Optional[str],  # noqa: UP045 - typer evaluates this at runtime
    typer.Option(
        "--msc",
        metavar="[SCALES|PRESET]",
        help=f"Multi-scale inference: average softmax over these scales; alone (or --msc=) = {DEFAULT_MSC}. "
        "Presets: refinenet = 0.4,0.6,0.8,1,1.2 after bringing the short side into [450, 800], no flip (the "
        "MATLAB RefineNet's demo_predict_mscale_*.m); refinenet-cityscapes = the same with [600, 1100].",
    ),
]


class LogitUpsample(str, Enum):
    """How logits reach the image/label size."""

    bilinear = "bilinear"
    bicubic = "bicubic"


UpsampleOpt = Annotated[
    LogitUpsample,
    typer.Option(
        "--upsample",
        help="How logits are resized to the image: bilinear (refine's default, LW-RefineNet v2), or bicubic "
        "(cv2 INTER_CUBIC's kernel, as the LW-RefineNet notebooks and v1 validation did).",
    ),
]
FlipOpt = Annotated[bool, typer.Option("--flip", help="Also average horizontally flipped views.")]
TileOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--tile", metavar="HxW", help="Sliding-window inference with HxW windows (1/3 overlap)."),
]
CrfOpt = Annotated[bool, typer.Option("--crf", help="Dense-CRF post-processing (needs the 'crf' extra).")]
CrfParamOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--crf-param",
        metavar="KEY=VALUE",
        help="Override a CRF parameter (repeatable): iterations, bi_w, bi_xy_std, bi_rgb_std, pos_w, pos_xy_std.",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
WorkersOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--crf-workers",
        "--workers",
        "-j",
        min=1,
        help="Processes running the dense CRF, with --crf (default: CPU count - 1); --workers is the old name.",
    ),
]
CompileOpt = Annotated[
    bool, typer.Option("--compile", help="torch.compile the model (PyTorch checkpoints; pays off on long runs).")
]
PrecisionOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--precision",
        metavar="fp32|tf32|bf16|fp16",
        help="fp32 (default, strict: TF32 off), tf32 (CUDA), bf16 (CPUs with AVX512-BF16/AMX, CUDA) or fp16 (CUDA) "
        "autocast; logits, TTA and CRF stay fp32. ONNX Runtime runs an .onnx file at its export precision; "
        "OpenVINO in fp32 or bf16 (outside the int8 layers of a quantised file).",
    ),
]
CheckpointHelp = "refine checkpoint (.pt: PyTorch) or `refine export` file (.onnx: ONNX Runtime or OpenVINO)."
RuntimeOpt = Annotated[
    str,
    typer.Option(
        "--runtime",
        help="auto (by file: .pt PyTorch, .onnx ONNX Runtime), torch, onnxruntime or openvino (.onnx files; "
        "--precision fp32 or bf16).",
    ),
]
BatchOpt = Annotated[int, typer.Option("--batch", min=1, help="Images per forward pass (same-size images only).")]
ShortSideOpt = Annotated[
    str,
    typer.Option(
        "--short-side",
        metavar="auto|native|N",
        help="Predict images whose short side is over N at a short side of N (logits resized back to the image). "
        "auto: the size a model trained on large photos used (its plan says so), else native (the image's own).",
    ),
]
ThreadsOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--threads", min=1, help="CPU threads for the model (default: the CPUs, less the CRF workers)."),
]


def _inference_options(
    msc: MscOpt = None,
    upsample: UpsampleOpt = LogitUpsample.bilinear,
    flip: FlipOpt = False,
    tile: TileOpt = None,
    crf: CrfOpt = False,
    crf_param: CrfParamOpt = None,
    device: DeviceOpt = "auto",
    batch: BatchOpt = 1,
    workers: WorkersOpt = None,
    compile_model: CompileOpt = False,
    precision: PrecisionOpt = None,
    threads: ThreadsOpt = None,
    runtime: RuntimeOpt = "auto",
    short_side: ShortSideOpt = "auto",
) -> None:
    """The options of every command that runs a model on images (declaration only: see InferenceOptions)."""


@dataclass
class InferenceOptions:
    """How `eval` and `predict` run a model: views (TTA), CRF, device, batch, workers, compile, precision, threads."""

    msc: str | None = None
    upsample: LogitUpsample | str = LogitUpsample.bilinear
    flip: bool = False
    tile: str | None = None
    crf: bool = False
    crf_param: list[str] | None = None
    device: str = "auto"
    batch: int = 1
    workers: int | None = None
    compile_model: bool = False
    precision: str | None = None
    threads: int | None = None
    runtime: str = "auto"
    short_side: str = "auto"

    def config(self) -> InferenceConfig:
        """The engine's InferenceConfig: the views, the CRF, batching and the test protocol, checked."""
        from refine_cli.engine.infer.loop import InferenceConfig

        scales, tile = resolve_tta(self.msc, self.tile)
        setting = self._msc_setting()
        asked = self._asked_short_side()
        if setting and setting.short_side and asked != "auto":
            raise RefineError(
                f"--msc {setting.preset} brings the short side into {setting.short_side[0]}-{setting.short_side[1]} "
                "itself; --short-side would contradict it",
                hint="drop --short-side, or give --msc as scales",
            )
        short_side = setting.short_side if setting and setting.short_side else None
        if isinstance(asked, int):
            short_side = work_short_side(asked)
        return InferenceConfig(
            scales=scales, flip=self.flip, tile=tile, crf=resolve_crf(self.crf, self.crf_param), batch_size=self.batch,
            workers=self.workers, upsample=LogitUpsample(self.upsample).value, short_side=short_side,
        )  # fmt: skip

    def for_model(self, config: InferenceConfig, loaded: Any) -> InferenceConfig:
        """`config` with `--short-side auto` resolved: the working size of a model trained on large photos."""
        if self._asked_short_side() != "auto" or config.short_side is not None or not loaded.work_side:
            return config
        return replace(config, short_side=work_short_side(loaded.work_side))

    def _asked_short_side(self) -> str | int:
        """'auto', 'native' or a short side N >= 32 from --short-side; RefineError for anything else."""
        text = str(self.short_side).strip().lower()
        if text in ("auto", "native"):
            return text
        if not text.isdigit() or int(text) < 32:
            raise RefineError(f"--short-side {self.short_side!r} is not auto, native or a number >= 32")
        return int(text)

    def preset(self) -> str | None:
        """The name of the --msc preset the scales came from (reports record it), or None."""
        setting = self._msc_setting()
        return setting.preset if setting else None

    def _msc_setting(self) -> Any:
        from refine_cli.engine.infer.tta import resolve_msc

        return resolve_msc(self.msc) if self.msc and self.msc.strip() else None

    def load(self, checkpoint: Path) -> Any:
        """The model of `checkpoint` (.pt or .onnx) ready to run, after a warning if its precision is slow here."""
        from refine_cli.engine.infer.loop import load_model
        from refine_cli.threads import apply_threads

        apply_threads(self.threads, workers=self.crf_workers())  # before the model (and an ONNX session) exists
        runtime = self.runtime.strip().lower()
        loaded = load_model(checkpoint, self.device, self.compile_model, resolve_precision(self.precision), runtime)
        warn_if_slow_precision(loaded.backend.precision, loaded.backend.device)
        return loaded

    def crf_workers(self) -> int:
        """The CRF worker processes this run starts (they share the CPUs with the model's threads)."""
        if not self.crf:
            return 0
        from refine_cli.engine.infer.crf import default_workers

        workers = self.workers or default_workers()
        return workers if workers > 1 else 0  # one worker runs inline, in this process

    def given(self) -> dict[str, bool]:
        """Which of these options the user set (for commands where running no model makes them meaningless)."""
        return {
            "--msc": self.msc is not None, "--flip": self.flip, "--tile": self.tile is not None, "--crf": self.crf,
            "--upsample": LogitUpsample(self.upsample) is not LogitUpsample.bilinear,
            "--precision": self.precision is not None, "--compile": self.compile_model,
            "--device": self.device != "auto", "--batch": self.batch != 1, "--crf-workers": self.workers is not None,
            "--threads": self.threads is not None, "--runtime": self.runtime != "auto",
            "--short-side": self._asked_short_side() != "auto",
        }  # fmt: skip


def inference_command(fn: Callable) -> Callable:
    """`fn(run: InferenceOptions, **own_options)` as a Typer command: own options, then the inference ones."""
    return with_shared_options(fn, "run", InferenceOptions, parameters_of(_inference_options))


def resolve_tta(msc: str | None, tile: str | None) -> tuple[tuple[float, ...], tuple[int, int] | None]:
    """CLI strings -> (scales, tile); `--msc=` (empty) means the default set."""
    from refine_cli.engine.infer.tta import resolve_msc

    if msc is not None and not msc.strip():
        msc = DEFAULT_MSC
    return resolve_msc(msc).scales, (parse_size(tile, "--tile", minimum=16) if tile and tile.strip() else None)


def resolve_precision(value: str | None) -> str | None:
    """--precision as the engine spells it (lower case); None = the model file's own precision."""
    return None if value is None else value.strip().lower()


def warn_if_slow_precision(precision: str, device: object) -> None:
    """One warning line when the chosen precision is valid but will be slow here (bf16 on an old CPU)."""
    import torch

    from refine_cli.cli._console import warn
    from refine_cli.engine.infer.model_prep import slow_precision_warning

    note = slow_precision_warning(precision, torch.device(str(device)))
    if note:
        warn(note)


def resolve_crf(enabled: bool, overrides: list[str] | None):  # noqa: ANN201 - CRFParams | None, lazily imported
    """CRFParams (DeepLab defaults + KEY=VALUE overrides) when --crf is on, else None."""
    from dataclasses import fields

    from refine_cli.engine.infer.crf import CRFParams, check_available

    if not enabled:
        if overrides:
            raise RefineError("--crf-param was given without --crf", hint="add --crf")
        return None
    check_available()
    params = CRFParams()
    types = {f.name: f.type for f in fields(CRFParams)}
    for item in overrides or []:
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in types or not value:
            raise RefineError(f"invalid --crf-param {item!r}", hint="use KEY=VALUE with KEY in " + ", ".join(types))
        try:
            number = int(value) if key == "iterations" else float(value)
        except ValueError:
            raise RefineError(f"invalid --crf-param {item!r}: {value!r} is not a number") from None
        params = replace(params, **{key: number})
    return params


def describe_settings(config: InferenceConfig, preset: str | None = None) -> str:
    """One line for report headers: what inference actually did (`preset`: the --msc preset it came from)."""
    scale_text = ", ".join(f"{s:g}" for s in config.scales)
    if preset:
        scale_text = f"{preset}: {scale_text}"
    if config.short_side and config.short_side[0] <= 1:  # a working size: large images come down, none go up
        scale_text += f" (short side at most {config.short_side[1]})"
    elif config.short_side:
        scale_text += " (short side into {}-{})".format(*config.short_side)
    crf, tile = config.crf, config.tile
    crf_text = "off"
    if crf is not None:
        crf_text = (
            "on ({iterations} it, bilateral w={bi_w:g} xy={bi_xy_std:g} rgb={bi_rgb_std:g}; "
            "gaussian w={pos_w:g} xy={pos_xy_std:g})".format(**crf.to_dict())
        )  # type: ignore[attr-defined]
    tile_text = f"{tile[0]}x{tile[1]}" if tile else "whole image"
    flip = "on" if config.flip else "off"
    return f"scales {scale_text} | flip {flip} | CRF {crf_text} | {tile_text} | {config.upsample} logits"
