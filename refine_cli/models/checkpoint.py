"""The refine checkpoint: one self-describing file that train writes and eval, predict and bench read.

A plain dict of tensors, strings and numbers (so `torch.load(weights_only=True)` can read it without
ever unpickling code): the model name and constructor arguments, class names and palette, weights,
the training config and metrics. Official LW-RefineNet / RefineNet files are recognised and the user
is pointed at `refine convert` instead of a confusing key error. Only the refine format lives here:
reading and loading weights is `weights.py`'s job, official key names `official.py`'s.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from refine_cli import __version__
from refine_cli.class_tables import (
    VOC_CLASSES,
    check_class_names,
    check_num_classes,
    check_palette,
    is_int,
    voc_palette,
)
from refine_cli.errors import RefineError
from refine_cli.fileio import atomic_path
from refine_cli.models.registry import ARCHITECTURE_OPTIONS, check_architecture
from refine_cli.models.weights import load_strict, read_torch_file, unwrap_state_dict

FORMAT = "refine-checkpoint"
FORMAT_VERSION = 1
# What `create_model` may be given from a file: loading never downloads or reads other weights.
MODEL_KWARGS = ("num_classes", *ARCHITECTURE_OPTIONS)
_REWRITE = "the file is damaged or was not written by refine; use a checkpoint from refine train/convert"


def default_classes(num_classes: int) -> list[str]:
    """VOC names for 21 classes, else class_0, class_1, ..."""
    return list(VOC_CLASSES) if num_classes == 21 else [f"class_{i}" for i in range(num_classes)]


def default_palette(num_classes: int) -> list[list[int]]:
    """The VOC colours of the first `num_classes` classes, as the JSON-friendly lists a checkpoint stores."""
    return [list(rgb) for rgb in voc_palette(num_classes)]


def check_normalization(value: Any, where: str) -> dict[str, list[float]] | None:
    """A checkpoint's input normalisation: None (ImageNet's) or {"mean": [3 floats], "std": [3 floats > 0]}.

    Both apply to RGB scaled to [0, 1]: the model sees (x / 255 - mean) / std. The MATLAB RefineNet's
    "RGB 0-255 minus 128" is mean 128/255 and std 1/255.
    """
    if value is None:
        return None
    ok = isinstance(value, Mapping) and set(value) <= {"mean", "std", "note"}
    numbers = {}
    for key in ("mean", "std"):
        items = value.get(key) if ok else None
        good = isinstance(items, (list, tuple)) and len(items) == 3
        good = good and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items)
        if not good or (key == "std" and min(items) <= 0):
            raise RefineError(f"{where}: normalization.{key} must be 3 finite numbers (std > 0)", hint=_REWRITE)
        numbers[key] = [float(v) for v in items]
    if "note" in value and not isinstance(value["note"], str):
        raise RefineError(f"{where}: normalization.note must be text", hint=_REWRITE)
    return {**numbers, **({"note": value["note"]} if "note" in value else {})}


@dataclass
class Checkpoint:
    """A loaded refine checkpoint (all fields as saved)."""

    model: str
    model_kwargs: dict[str, Any]
    num_classes: int
    classes: list[str]
    palette: list[list[int]]
    state_dict: dict[str, torch.Tensor]
    train_config: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None
    refine_version: str | None = None
    created: str | None = None
    format_version: int = FORMAT_VERSION
    path: Path | None = field(default=None, repr=False)
    normalization: dict[str, Any] | None = None  # None: ImageNet's mean/std (check_normalization)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], path: Path) -> Checkpoint:
        """Check every field of a loaded checkpoint dict (type and range); RefineError names the bad field."""
        version = payload.get("format_version")
        if not is_int(version) or not 1 <= version <= FORMAT_VERSION:
            raise RefineError(
                f"{path} has checkpoint format version {version!r}; this refine reads up to {FORMAT_VERSION}",
                hint="upgrade refine" if is_int(version) and version > FORMAT_VERSION else _REWRITE,
            )
        from refine_cli.models import list_models

        known = list_models()
        if payload.get("model") not in known:
            raise RefineError(
                f"{path} is for model {payload.get('model')!r}, which this refine does not know",
                hint="known models: " + ", ".join(known),
            )
        kwargs = _field(payload, "model_kwargs", dict, path) or {}
        unknown = sorted(str(key) for key in kwargs if key not in MODEL_KWARGS)
        if unknown:
            raise RefineError(f"{path}: model_kwargs has unknown argument(s) {', '.join(unknown)}", hint=_REWRITE)
        try:
            architecture = check_architecture(payload["model"], {k: v for k, v in kwargs.items() if k != "num_classes"})
        except RefineError as error:
            raise RefineError(f"{path}: model_kwargs: {error.message}", hint=_REWRITE) from None
        classes = payload.get("classes")
        num_classes = kwargs.get("num_classes", len(classes) if isinstance(classes, list) else None)
        num_classes = check_num_classes(num_classes, "model_kwargs.num_classes", str(path), _REWRITE)
        if classes is None:
            classes = default_classes(num_classes)
        palette = payload.get("palette")
        if palette is None:
            palette = default_palette(num_classes)
        state_dict = _field(payload, "state_dict", dict, path, required=True)
        if not state_dict or not all(
            isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state_dict.items()
        ):
            raise RefineError(f"{path}: state_dict must map parameter names to tensors", hint=_REWRITE)
        return cls(
            model=payload["model"],
            model_kwargs={**architecture, "num_classes": num_classes},
            num_classes=num_classes,
            classes=check_class_names(classes, num_classes, "classes", str(path), _REWRITE),
            palette=check_palette(palette, num_classes, "palette", str(path), _REWRITE),
            state_dict=dict(state_dict),
            train_config=_field(payload, "train_config", dict, path),
            metrics=_field(payload, "metrics", dict, path),
            extra=_field(payload, "extra", dict, path),
            refine_version=_field(payload, "refine_version", str, path),
            created=_field(payload, "created", str, path),
            format_version=version,
            path=path,
            normalization=check_normalization(payload.get("normalization"), str(path)),
        )

    @property
    def architecture(self) -> dict[str, Any]:
        """The architecture options the model was built with (those that differ from the defaults)."""
        return {key: value for key, value in self.model_kwargs.items() if key != "num_classes"}

    @property
    def dataset_facts(self) -> dict[str, Any]:
        """What `refine train` recorded about its dataset (name, ignore index, extra meta), or {}."""
        return dict((self.extra or {}).get("dataset") or {})

    @property
    def label_id_map(self) -> list[int] | None:
        """Class index -> source id (Cityscapes trainId -> labelId) if the training data had one."""
        id_map = (self.dataset_facts.get("extra") or {}).get("train_id_to_label_id")
        return [int(v) for v in id_map] if id_map else None

    @property
    def work_side(self) -> int | None:
        """The short side large images were trained at (`data.max_short_side`), so eval/predict use it too; None:
        the images' own size. A damaged value is refused, not guessed."""
        value = ((self.train_config or {}).get("data") or {}).get("max_short_side")
        if value is None:
            return None
        if not is_int(value) or value < 32:
            raise RefineError(f"{self.path}: train_config.data.max_short_side must be an integer >= 32", hint=_REWRITE)
        return int(value)

    @property
    def ignore_index(self) -> int:
        """The label value that marks unlabelled pixels: 255, the unified format's, unless recorded otherwise."""
        return int(self.dataset_facts.get("ignore_index", 255))

    def build_model(self, device: str | torch.device = "cpu") -> nn.Module:
        """Create the architecture and load the weights strictly (every key, every shape)."""
        from refine_cli.models import create_model

        model = create_model(self.model, **self.model_kwargs)
        load_checkpoint_weights(model, self.state_dict, str(self.path or "checkpoint"))
        set_input_normalization(model, self.normalization)
        return model.to(device)


def _field(payload: Mapping[str, Any], name: str, kind: type, path: Path, required: bool = False) -> Any:
    """payload[name] when it has type `kind`, None when absent and not `required`; else RefineError naming it."""
    value = payload.get(name)
    if value is None:
        if required:
            raise RefineError(f"{path}: the checkpoint has no {name}", hint=_REWRITE)
        return None
    if not isinstance(value, kind):
        raise RefineError(f"{path}: {name} must be a {kind.__name__}, not {type(value).__name__}", hint=_REWRITE)
    return value


def set_input_normalization(model: nn.Module, normalization: Mapping[str, Any] | None) -> None:
    """Give `model` the input normalisation its weights expect, as (mean, std); None keeps ImageNet's.

    It travels with the module, so the inference loop, training from `--init` and a checkpoint saved
    from the model all use (and keep) the one the weights were trained with.
    """
    model.input_normalization = (
        (tuple(normalization["mean"]), tuple(normalization["std"])) if normalization is not None else None
    )


def load_checkpoint_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a refine checkpoint's weights: strictly, every key (BatchNorm counters included) and every shape."""
    load_strict(
        model, state_dict, f"weights in {source}", "the checkpoint was made for a different architecture or version", ()
    )


def _plain(value: Any, where: str) -> Any:
    """Reduce config/metric values to types weights_only loading accepts (Path -> str, numpy -> python)."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[]") for item in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalar / 0-d array
        return value.item()
    raise TypeError(f"{where} holds a {type(value).__name__}, which a checkpoint cannot store")


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model_name: str,
    model: nn.Module | None = None,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    num_classes: int,
    classes: list[str] | None = None,
    palette: list[list[int]] | None = None,
    train_config: dict | None = None,
    metrics: dict | None = None,
    extra: dict | None = None,
    model_kwargs: dict | None = None,
    normalization: dict | None = None,
) -> None:
    """Write a refine checkpoint atomically (weights from `model` or `state_dict`, moved to the CPU).

    A `model` made by `create_model` brings its architecture options and input normalisation along
    (`model_kwargs` and `normalization` given here win).
    """
    if (model is None) == (state_dict is None):
        raise TypeError("give exactly one of model= or state_dict=")
    model_kwargs = {**dict(getattr(model, "architecture", None) or {}), **(model_kwargs or {})}
    if normalization is None and getattr(model, "input_normalization", None) is not None:
        mean, std = model.input_normalization  # type: ignore[union-attr]
        normalization = {"mean": list(mean), "std": list(std)}
    normalization = check_normalization(normalization, str(path))
    weights = model.state_dict() if model is not None else state_dict
    classes = list(classes) if classes is not None else default_classes(num_classes)
    palette = [list(map(int, rgb)) for rgb in palette] if palette is not None else default_palette(num_classes)
    if len(classes) != num_classes or len(palette) != num_classes:
        raise ValueError(f"{len(classes)} class names and {len(palette)} colours for {num_classes} classes")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_name,
        "model_kwargs": _plain({**model_kwargs, "num_classes": num_classes}, "model_kwargs"),
        "normalization": normalization,
        "classes": classes,
        "palette": palette,
        "state_dict": {key: value.detach().cpu() for key, value in weights.items()},
        "train_config": _plain(train_config, "train_config"),
        "metrics": _plain(metrics, "metrics"),
        "extra": _plain(extra, "extra"),
        "refine_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a refine checkpoint safely (weights_only) and check it is one this version understands."""
    path = Path(path)
    obj = read_torch_file(path)
    if not isinstance(obj, Mapping) or obj.get("format") != FORMAT:
        official = unwrap_state_dict(obj)
        from refine_cli.models.official import guess_official_model

        guess = guess_official_model(official) if official else None
        if guess:
            raise RefineError(
                f"{path} is an official {guess} state_dict, not a refine checkpoint",
                hint=f"import it once with `refine convert {path} --model {guess} --out CK.pt`",
            )
        if official:
            raise RefineError(
                f"{path} is a bare state_dict, not a refine checkpoint",
                hint="import it with `refine convert SRC --model NAME --out CK.pt`",
            )
        raise RefineError(f"{path} is not a refine checkpoint", hint="give a file written by refine train/convert")
    return Checkpoint.from_payload(obj, path)
