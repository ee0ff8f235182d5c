"""Import official LW-RefineNet / RefineNet-PyTorch weights into a refine checkpoint, strictly.

The official loaders used strict=False, which silently loaded nothing for many users. Here every key
must map and every shape must match, or the user gets one line naming the offending keys.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from refine_cli.errors import RefineError
from refine_cli.models.checkpoint import FORMAT, save_checkpoint
from refine_cli.models.official import OFFICIAL_CLASSIFIERS, guess_official_model
from refine_cli.models.weights import classifier_classes, load_strict, read_torch_file, unwrap_state_dict


def file_sha256(path: Path) -> str:
    """The sha256 of a source file, read in 1 MiB blocks: the provenance a converted checkpoint records."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ConvertReport:
    """What `refine convert` did: the model and classes written, and the source file's identity."""

    model: str
    num_classes: int
    params: int
    source: str
    source_sha256: str
    source_keys: int
    out: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def convert_official(
    src: str | os.PathLike[str],
    model_name: str,
    out: str | os.PathLike[str],
    num_classes: int | None = None,
    overwrite: bool = False,
) -> ConvertReport:
    """Convert the official state_dict in `src` for `model_name` into a refine checkpoint at `out`."""
    from refine_cli.guards import refuse_output_over_inputs
    from refine_cli.models import create_model, model_info
    from refine_cli.models.official import import_official_state_dict

    src, out = Path(src), Path(out)
    model_name = model_info(model_name).name
    if out.exists() and not overwrite:
        raise RefineError(f"{out} already exists", hint="choose another --out or pass --force to replace it")
    refuse_output_over_inputs({"--out": out}, {"source checkpoint": src})  # also for library callers
    obj = read_torch_file(src)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        raise RefineError(f"{src} is already a refine checkpoint", hint="use it directly with --checkpoint")
    state_dict = unwrap_state_dict(obj)
    if state_dict is None:
        top = ", ".join(list(obj)[:5]) if isinstance(obj, dict) else type(obj).__name__
        raise RefineError(
            f"no state_dict found in {src} (top level: {top})",
            hint="expected a state_dict, possibly under 'segmenter', 'state_dict' or 'model'",
        )
    guess = guess_official_model(state_dict)
    if guess is not None and guess != model_name:
        raise RefineError(f"{src} holds {guess} weights, not {model_name}", hint=f"use --model {guess}")
    found = classifier_classes(state_dict, OFFICIAL_CLASSIFIERS)
    if found is None:
        raise RefineError(
            f"{src} has no classifier weight (clf_conv.weight or segm.weight)",
            hint="is this an official LW-RefineNet / RefineNet checkpoint?",
        )
    if num_classes is not None and num_classes != found:
        raise RefineError(
            f"--num-classes {num_classes} disagrees with the checkpoint, whose classifier has {found} classes",
            hint=f"drop --num-classes or use {found}",
        )
    ours = import_official_state_dict(model_name, state_dict)
    model = create_model(model_name, num_classes=found)
    load_strict(model, ours, f"weights in {src}")  # released LW files lack BN counters: they keep their 0
    params = sum(p.numel() for p in model.parameters())
    source_sha = file_sha256(src)
    save_checkpoint(
        out,
        model_name=model_name,
        model=model,
        num_classes=found,
        extra={"converted_from": src.name, "source_sha256": source_sha, "source_keys": len(state_dict)},
    )
    return ConvertReport(model_name, found, params, str(src), source_sha, len(state_dict), str(out))
