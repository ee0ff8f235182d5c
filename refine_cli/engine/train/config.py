"""Typed training configuration: dataclass defaults <- named recipe (YAML) <- explicit overrides.

The resolved config is what a run *is*: it is written beside the run (`config.yaml`) and inside every
checkpoint, so a run can be resumed or reproduced from its folder alone. Values are coerced to the
annotated types when loaded, so a recipe's `5e-4` (a string to YAML 1.1) still becomes a float.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from refine_cli.engine.train.schedules import SCHEDULES, describe_schedules
from refine_cli.errors import RefineError

AMP_MODES = ("off", "bf16", "fp16")


@dataclass(frozen=True)
class TrainOption:
    """What a config field is on the command line and which values it takes.

    Declared once, as the field's metadata: `refine train`'s flags (with Typer's min= and the help)
    are generated from it, and the same bounds check recipes and `--set`, so a flag and a --set value
    cannot disagree. `flag` None: the field has bounds but no flag of its own (use --set).
    """

    flag: str | None = None
    help: str = ""
    minimum: float | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    panel: str = "Training"


def option(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **spec: Any) -> Any:
    """A dataclass field whose metadata is its TrainOption."""
    return field(default=default, default_factory=factory, metadata={"option": TrainOption(**spec)})


def option_of(data_field: dataclasses.Field) -> TrainOption | None:
    """The TrainOption declared on a config field, if any."""
    return data_field.metadata.get("option")


def _check_bounds(section: Any, prefix: str) -> None:
    """Every field's declared minimum and choices (a None value means "not set" and passes)."""
    for data_field in dataclasses.fields(section):
        spec, value = option_of(data_field), getattr(section, data_field.name)
        if spec is None or value is None:
            continue
        key = f"{prefix}.{data_field.name}"
        if spec.minimum is not None and value < spec.minimum:
            _check(False, f"{key} must be at least {spec.minimum:g}, got {value}")
        if spec.choices is not None and value not in spec.choices:
            _check(False, f"{key} must be one of {', '.join(spec.choices)}, got {value!r}")


_DATA, _MODEL, _OPTIM = "Data", "Model", "Optimiser"


@dataclass
class DataConfig:
    """Where the samples come from and how training crops are made (LW-RefineNet augmentation)."""

    root: str = option(
        "", flag="--data", help="Unified dataset folder (or its name under $REFINE_DATA).", metavar="PATH", panel=_DATA
    )
    train_split: str = option("train", flag="--train-split", help="Split to train on.", panel=_DATA)
    val_split: str | None = option(
        "val", flag="--val-split", help="Split to validate on ('none' to skip).", panel=_DATA
    )
    crop: int = option(500, flag="--crop", minimum=8, help="Square training crop size.", panel=_DATA)
    scale_min: float = 0.5
    scale_max: float = 2.0
    # after random scaling the short side is at least this (LW: 350)
    min_short_side: int | None = option(350, minimum=1)
    # the working size of large photos: a short side above this counts as this (train, validation, the saved
    # model's eval/predict default); None = the images' own size (the papers' datasets)
    max_short_side: int | None = option(None, minimum=32)
    hflip: bool = True
    batch: int = option(6, flag="--batch", minimum=1, help="Images per step per process.", panel=_DATA)
    workers: int = option(
        2, flag="--workers", minimum=0, help="Data loader processes per training process (0 = none).", panel=_DATA
    )

    def __post_init__(self) -> None:
        _check_bounds(self, "data")
        _check(0 < self.scale_min <= self.scale_max, "data.scale_min must be > 0 and <= data.scale_max")
        _check(
            self.max_short_side is None or self.min_short_side is None or self.max_short_side >= self.min_short_side,
            "data.max_short_side must be at least data.min_short_side (training never goes below the minimum, "
            "so the model would be scored at a size it never saw)",
        )


@dataclass
class ModelConfig:
    """Which network to train and what it starts from."""

    name: str = option("lw-refinenet-50", flag="--model", help="Model name (refine models).", panel=_MODEL)
    pretrained_backbone: bool = option(
        False, flag="--pretrained-backbone", help="ImageNet backbone weights.", panel=_MODEL
    )
    backbone_weights: str | None = option(
        None, flag="--backbone-weights", help="Local backbone state_dict.", metavar="PATH", panel=_MODEL
    )
    # checkpoint of a previous stage (e.g. COCO -> SBD -> VOC)
    init: str | None = option(
        None, flag="--init", help="Start from this checkpoint (staged training).", metavar="PATH", panel=_MODEL
    )
    freeze_bn: bool = True


@dataclass
class OptimConfig:
    """SGD with separate encoder/decoder learning rates and a per-iteration schedule."""

    encoder_lr: float = option(
        5e-4, flag="--lr", help="Encoder learning rate (decoder: x --decoder-lr-mult).", panel=_OPTIM
    )
    decoder_lr_mult: float = option(10.0, flag="--decoder-lr-mult", help="Decoder lr / encoder lr.", panel=_OPTIM)
    momentum: float = 0.9
    weight_decay: float = option(1e-5, flag="--weight-decay", minimum=0, help="SGD weight decay.", panel=_OPTIM)
    nesterov: bool = False
    schedule: str = option(
        "multistep", flag="--schedule", choices=tuple(SCHEDULES), help=describe_schedules(), panel=_OPTIM
    )
    milestones: list[float] = field(default_factory=lambda: [1 / 3, 2 / 3])  # fractions of the run
    lr_factors: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.2])  # LW: 5e-4, 2.5e-4, 1e-4
    poly_power: float = 0.9
    warmup_iters: int = option(0, minimum=0)
    grad_clip: float | None = option(None, flag="--grad-clip", help="Clip the global gradient norm.", panel=_OPTIM)
    # LW's stages each built a fresh optimiser: with `multistep`, drop SGD's momentum at every milestone
    restart_at_milestones: bool = False

    def __post_init__(self) -> None:
        _check(self.encoder_lr > 0 and self.decoder_lr_mult > 0, "optim learning rates must be positive")
        _check(
            len(self.lr_factors) == len(self.milestones) + 1,
            "optim.lr_factors needs exactly one more entry than optim.milestones",
        )
        _check(
            all(0 < m < 1 for m in self.milestones) and self.milestones == sorted(self.milestones),
            "optim.milestones are increasing fractions of the run, each between 0 and 1",
        )
        _check_bounds(self, "optim")
        _check(self.grad_clip is None or self.grad_clip > 0, "optim.grad_clip must be positive")


@dataclass
class LoopConfig:
    """How long to train, how often to validate, and numerics."""

    epochs: int | None = option(300, flag="--epochs", minimum=1, help="Train for N epochs.")
    # optimiser steps; when set it replaces epochs
    iters: int | None = option(None, flag="--iters", minimum=1, help="Train for N optimiser steps.")
    val_every: int = option(
        5, flag="--val-every", minimum=1, help="Validate + checkpoint every N epochs (N steps with --iters)."
    )
    val_unit: str = option("auto", choices=("auto", "epochs", "steps"))  # auto: the unit of the run's length
    seed: int = option(42, flag="--seed", help="Random seed.")
    amp: str = option("off", flag="--amp", choices=AMP_MODES, help="Mixed precision: off, bf16 or fp16 (CUDA).")
    device: str = option("auto", flag="--device", help="auto, cpu, cuda or cuda:N.")
    # None: refine_cli.threads' rule (CPUs / processes, less the data-loader workers), or OMP_NUM_THREADS
    threads: int | None = option(
        None,
        flag="--threads",
        minimum=1,
        help="CPU threads per process (default: the CPUs / processes, less the data-loader workers).",
    )
    log_every: int = option(20, minimum=1)
    class_weights: list[float] | None = None  # per-class loss weights (imbalanced data); None = unweighted
    # last.pt is also written on its own cadence, so an interruption between validations loses little
    save_every_steps: int = option(
        0,
        flag="--save-every-steps",
        minimum=0,
        help="Also write last.pt every N steps (0 = only at validation points).",
    )
    save_every_minutes: float = option(
        15.0, flag="--save-every-minutes", minimum=0, help="Also write last.pt every M minutes of training (0 = off)."
    )

    def __post_init__(self) -> None:
        _check(self.epochs is not None or self.iters is not None, "set train.epochs or train.iters")
        _check_bounds(self, "train")
        _check(
            self.class_weights is None or all(math.isfinite(w) and w >= 0 for w in self.class_weights),
            "train.class_weights must be finite and non-negative",
        )
        _check(  # all zero: every loss is 0 and the run trains nothing, silently
            self.class_weights is None or any(w > 0 for w in self.class_weights),
            "train.class_weights must give at least one class a weight above 0",
        )


@dataclass
class TrainConfig:
    """The whole resolved configuration of one training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    recipe: str | None = None
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain python types only (safe for YAML and for `torch.load(weights_only=True)`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build and validate a config; unknown keys and wrong types are user errors."""
        return _build(cls, data, prefix="")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def train_options() -> list[tuple[str, Any, TrainOption]]:
    """(dotted key, field type, option) of every config field with a flag, in declaration order.

    The one table `refine train`'s command is generated from (cli/train.py).
    """
    found = []
    for section in dataclasses.fields(TrainConfig):
        section_type = typing.get_type_hints(TrainConfig)[section.name]
        if not dataclasses.is_dataclass(section_type):
            continue
        hints = typing.get_type_hints(section_type)
        for data_field in dataclasses.fields(section_type):
            spec = option_of(data_field)
            if spec is not None and spec.flag is not None:
                found.append((f"{section.name}.{data_field.name}", hints[data_field.name], spec))
    return found


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise RefineError(f"invalid training config: {message}", "fix the recipe file, the flag or the --set value")


def list_recipes() -> list[str]:
    """Names of the recipes shipped with refine (`refine_cli/recipes/*.yaml`)."""
    folder = resources.files("refine_cli") / "recipes"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """A recipe by name (shipped) or by path to a YAML file, as a nested dict."""
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise RefineError(f"config file not found: {name_or_path}", "check the path")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # `--recipe best.pt`: a binary file given where YAML belongs
            raise RefineError(f"recipe {name_or_path} is not a text (YAML) file", "give a recipe .yaml") from None
    else:
        shipped = resources.files("refine_cli") / "recipes" / f"{name_or_path}.yaml"
        if not shipped.is_file():
            raise RefineError(f"unknown recipe '{name_or_path}'", f"choose one of: {', '.join(list_recipes())}")
        text = shipped.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise RefineError(f"recipe {name_or_path} is not valid YAML: {error}", "fix the file") from None
    if not isinstance(data, dict):
        raise RefineError(f"recipe {name_or_path} must be a mapping of sections", "see refine_cli/recipes/*.yaml")
    return data


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set `section.field` in a nested dict (creating the section)."""
    section, _, name = key.rpartition(".")
    target = data
    if section:
        for part in section.split("."):
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise RefineError(f"cannot set {key}: {part} is not a section", "use section.field=value")
    target[name] = value


def parse_assignment(text: str) -> tuple[str, Any]:
    """`optim.encoder_lr=1e-3` -> ('optim.encoder_lr', 0.001); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RefineError(f"bad --set value '{text}'", "write it as section.field=value, e.g. optim.poly_power=1.0")
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def resolve_config(
    recipe: str | None = None,
    base: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults, then `base` (e.g. a resumed run's config) or the recipe, then dotted-key overrides."""
    data: dict[str, Any] = {}
    if base is not None:
        data = _deep_copy(base)
    elif recipe is not None:
        data = load_recipe(recipe)
        data.setdefault("recipe", Path(recipe).stem if recipe.endswith((".yaml", ".yml")) else recipe)
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    return TrainConfig.from_dict(data)


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _deep_copy(v) if isinstance(v, dict) else (list(v) if isinstance(v, list) else v) for k, v in data.items()
    }


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise RefineError(f"invalid training config: {prefix.rstrip('.') or 'config'} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise RefineError(
            f"invalid training config: unknown key '{prefix}{unknown[0]}'",
            f"known keys here: {', '.join(sorted(names))}",
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value if value is not None else {}, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the annotated type, or fail naming the key."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], key)
    if origin is list:
        (item,) = typing.get_args(hint)
        items = value if isinstance(value, (list, tuple)) else [value]
        return [_coerce(v, item, key) for v in items]
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValueError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise RefineError(
                    f"invalid training config: {key} must be a finite number, got {value!r}", "fix the recipe or flag"
                )
            return number
        if hint is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    name = getattr(hint, "__name__", str(hint))
    raise RefineError(f"invalid training config: {key} must be {name}, got {value!r}", "fix the recipe or flag")
