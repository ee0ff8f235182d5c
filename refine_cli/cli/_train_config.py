"""The config of a `refine train` run: defaults <- recipe (own-data defaults, or the resumed run's) <- flags.

Kept apart from the Typer command, which only parses, calls and prints: which base a run starts from
(a named recipe, the defaults for a `refine prepare custom` dataset, the config stored in the resumed
checkpoint), how the flags given override it, and the notes that tell the user what was chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from refine_cli.cli._console import err, warn
from refine_cli.errors import RefineError

if TYPE_CHECKING:
    from refine_cli.engine.train.config import TrainConfig


def resolve_run(
    flags: dict[str, Any],
    recipe: str | None,
    resume: Path | None,
    out_dir: Path | None,
    settings: list[str] | None,
) -> tuple[TrainConfig, Path, Path | None, str | None, str | None]:
    """(config, run folder, checkpoint to resume or None, a note for the user, why this model) for the flags.

    `flags` maps dotted config keys to the option values (None = not given); `settings` are the --set texts.
    """
    from refine_cli.engine.train import run_files
    from refine_cli.engine.train.config import parse_assignment, resolve_config
    from refine_cli.models.checkpoint import load_checkpoint

    overrides = _overrides(flags)
    model_reason = None
    val_split = flags.get("data.val_split")
    if val_split is not None and val_split.lower() == "none":
        overrides["data.val_split"] = None
    overrides.update(parse_assignment(text) for text in settings or [])
    if resume is not None:
        if recipe is not None:
            raise RefineError("--recipe cannot be combined with --resume", hint="a resumed run keeps its own config")
        checkpoint = run_files.find_resume_checkpoint(resume)
        if out_dir is not None and out_dir.resolve() != checkpoint.parent.resolve():
            raise RefineError("--out must be the resumed run's folder (or left out)", hint=f"drop --out {out_dir}")
        stored = load_checkpoint(checkpoint).train_config
        if not stored:
            raise RefineError(f"{checkpoint} holds no training config", hint="resume a run made by refine train")
        note = keep_validation_cadence(resolve_config(base=stored), overrides)
        cfg = resolve_config(base=stored, overrides=overrides)
        changed = sorted(key for key in overrides if _get(stored, key) != _get(cfg.to_dict(), key))
        if changed:
            warn(f"resuming with changed settings: {', '.join(changed)}")
        out_dir, resume_from = checkpoint.parent, checkpoint
    else:
        if out_dir is None:
            raise RefineError("no run folder given", hint="pass --out runs/NAME (or --resume runs/NAME)")
        if recipe is None and overrides.get("model.init") is not None and "model.name" not in overrides:  # fine-tune
            # the checkpoint given; a --recipe's model stays its own (a mismatch is then refused, naming --model)
            overrides["model.name"] = load_checkpoint(overrides["model.init"]).model
            err.print(f"note: model {overrides['model.name']}, the --init checkpoint's")
        own = _own_data(flags["data.root"]) if recipe is None else None
        base = None
        if own is not None:
            base, model_reason = _own_data_base(own, overrides, flags.get("data.batch"))
        note = keep_validation_cadence(resolve_config(recipe, base=base), overrides)
        cfg = resolve_config(recipe, base=base, overrides=overrides)
        resume_from = None
    return cfg, out_dir, resume_from, note, model_reason


def resolve_data(data: str) -> str:
    """--data as a folder, or a dataset name under $REFINE_DATA (like refine eval)."""
    from refine_cli.cli._paths import dataset_path

    path = dataset_path(data)
    return str(path.resolve()) if path.exists() else str(path)


def keep_validation_cadence(base: Any, overrides: dict[str, Any]) -> str | None:
    """--iters over an epoch-based recipe (or --epochs over a step-based one) without --val-every.

    `val_every` counts in the run's unit by default, so the recipe's "every 5 epochs" would silently
    become "every 5 steps". Keep the recipe's unit instead; returns a note for the user, or None.
    """
    if overrides.get("train.val_every") is not None or base.train.val_unit != "auto":
        return None
    iters, epochs = overrides.get("train.iters"), overrides.get("train.epochs")
    if iters and base.train.iters is None:
        unit = "epochs"
    elif epochs and base.train.epochs is None:
        unit = "steps"
    else:
        return None
    overrides["train.val_unit"] = unit
    return f"validating every {base.train.val_every} {unit}, as the recipe does; set --val-every N to change it"


def _own_data(root: str | None):  # noqa: ANN202 - a UnifiedDataset or None
    """The dataset when it was made by `refine prepare custom` (it then gets the own-data defaults)."""
    if not root:
        return None
    from refine_cli.data.format.unified import UnifiedDataset
    from refine_cli.engine.train.own_data import is_own_data
    from refine_cli.locks import LockBusyError

    try:
        source = UnifiedDataset(root)
    except LockBusyError:
        raise  # a prepare still writing it: waiting again in the trainer would only double the wait
    except RefineError:
        return None  # the trainer reports a bad --data with its own message
    return source if is_own_data(source) else None


def _own_data_base(source, overrides: dict[str, Any], batch: int | None) -> tuple[dict[str, Any], str]:  # noqa: ANN001
    """(own-data plan as a base config, why this model and start): the flags given are kept."""
    from refine_cli.engine.train import own_data

    choice = _own_data_model(overrides)
    base = own_data.own_data_defaults(source, batch, choice.name, choice.imagenet)
    if overrides.get("model.backbone_weights") is not None or overrides.get("model.init") is not None:
        base["model"]["pretrained_backbone"] = False  # the weights come from the file
    description = base["description"]
    lengths = [f"--{key[6:]} {overrides[key]}" for key in ("train.iters", "train.epochs") if overrides.get(key)]
    if lengths:  # the run's length is the user's: say so rather than describe a plan that will not run
        scaled, _, plan = description.partition(": ")
        description = f"{scaled}, run for {' '.join(lengths)} (instead of {plan})"
    err.print(f"note: own data, no --recipe: {escape(description)}")
    if not choice.imagenet:
        err.print(f"note: no ImageNet weights for {choice.name} here: training from scratch, which needs more data "
                  "and steps (pass --backbone-weights FILE when you have them)")  # fmt: skip
    for line in own_data.rare_class_notes(source, base["data"]["train_split"]):
        warn(line)
    return base, choice.reason


def _own_data_model(overrides: dict[str, Any]):  # noqa: ANN202 - own_data.ModelChoice
    """The model and whether it starts from trained weights: the user's flags, else own_data.choose_model."""
    from refine_cli.devices import resolve_device
    from refine_cli.engine.train import own_data

    weights_given = overrides.get("model.backbone_weights") is not None or overrides.get("model.init") is not None
    pretrained = overrides.get("model.pretrained_backbone")
    device = resolve_device(str(overrides.get("train.device") or "auto"))
    if "model.name" not in overrides and not weights_given and pretrained is None:
        return own_data.choose_model(device.type, _gpu_memory_gib(device), own_data.imagenet_weights_available)
    name = overrides.get("model.name") or own_data.choose_model(device.type, _gpu_memory_gib(device),
                                                                lambda _: False).name  # fmt: skip
    if weights_given:
        return own_data.ModelChoice(name, True, "starts from the weights file given")
    if pretrained is None:  # --model without a word on its start: ImageNet when it can be had
        pretrained = own_data.imagenet_weights_available(name)
    start = "from ImageNet" if pretrained else "from scratch"
    return own_data.ModelChoice(name, bool(pretrained), f"{start}, as asked" if "model.name" in overrides else start)


def _gpu_memory_gib(device: Any) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.get_device_properties(device).total_memory / 2**30


def _get(config: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def _overrides(values: dict[str, Any]) -> dict[str, Any]:
    """Dotted config keys for the flags the user actually gave (None = not given)."""
    chosen = {key: value for key, value in values.items() if value is not None}
    if "train.epochs" in chosen and "train.iters" in chosen:
        raise RefineError("give only one of --epochs and --iters", hint="the run length is counted in one unit")
    if "train.epochs" in chosen:
        chosen["train.iters"] = None  # an explicit length in one unit replaces the other
    elif "train.iters" in chosen:
        chosen["train.epochs"] = None
    return chosen
