"""Weights in and out of PyTorch files: the one place that reads them, unwraps them and loads them strictly.

Every way weights enter refine goes through here: refine checkpoints, official state_dicts, backbone
files and torchvision's ImageNet weights. Files are read with `weights_only=True` (no pickled code is
ever run); a state_dict is found inside the usual wrappers with one rule; loading is strict (every
key, every shape) and a mismatch is one line naming the first offending keys. What the official
files call their layers lives in `official.py`, the refine checkpoint format in `checkpoint.py`.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from refine_cli.errors import RefineError

# Containers other code puts a state_dict in: LW-RefineNet's training script ("segmenter"),
# Lightning and most training loops ("state_dict"), and "model".
WRAPPER_KEYS = ("segmenter", "state_dict", "model")
DATA_PARALLEL_PREFIX = "module."
# Released files often lack BatchNorm's step counter; it is not a weight.
OPTIONAL_KEYS = ("num_batches_tracked",)


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """The first sentence of an exception, so library errors fit the one-line error format."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    cut = text.find(". ", 20)
    text = text[: cut + 1] if cut > 0 else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_torch_file(path: Path, what: str = "checkpoint") -> Any:
    """torch.load(weights_only=True) with every failure turned into one clear RefineError naming `what`."""
    if not path.exists():
        raise RefineError(f"{what} {path} does not exist", hint="check the path")
    if path.is_dir():
        raise RefineError(f"{what} {path} is a directory", hint="give the file inside it")
    with open(path, "rb") as handle:
        head = handle.read(4)
    # torch.save writes a zip archive (PK..); the legacy format starts with a pickle protocol byte.
    if not head.startswith(b"PK\x03\x04") and not head.startswith(b"\x80"):
        raise RefineError(
            f"{path} is not a PyTorch file (it starts with {head!r})", hint="the file is corrupt or of another kind"
        )
    try:
        _check_claimed_sizes(path, what, head.startswith(b"PK"))
        return torch.load(path, map_location="cpu", weights_only=True)
    except RefineError:
        raise
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error):
            raise RefineError(
                f"{path} contains pickled Python objects that refine will not execute",
                hint="re-save it as a plain state_dict (torch.save(model.state_dict(), ...)) and run `refine convert`",
            ) from None
        raise RefineError(f"{path} is not a readable torch file ({error})", hint="the file may be corrupt") from None
    except Exception as error:  # noqa: BLE001 - a corrupt file can fail anywhere inside the unpickler
        raise RefineError(
            f"{what} {path} is not a readable PyTorch file ({short_reason(error)})",
            hint="the file is corrupt (e.g. cut off during a copy) or not a torch file",
        ) from None


def _allowed_bytes(file_size: int) -> int:
    """What a file of `file_size` bytes may hold once loaded: its own size, and a little slack for headers."""
    return int(file_size * 1.1) + (1 << 20)


def _check_claimed_sizes(path: Path, what: str, is_zip: bool) -> None:
    """Refuse a file that would make torch allocate far more than the file holds, before it does.

    A crafted 4 MB .pt can unpack a deflated record to gigabytes, or claim tensors of any size in its
    pickle; a real torch.save file stores its tensors uncompressed, so neither may exceed the file.
    The claims are read with map_location="meta": shapes only, no data, no allocation.
    """
    size = path.stat().st_size
    limit = _allowed_bytes(size)
    if is_zip:
        import zipfile

        try:
            with zipfile.ZipFile(path) as archive:
                unpacked = sum(info.file_size for info in archive.infolist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return  # torch.load reports a damaged file in its own words
        if unpacked > limit:
            raise RefineError(
                f"{what} {path} unpacks to {unpacked:,} bytes from a {size:,}-byte file",
                hint="a file written by torch.save stores its tensors uncompressed; this one is crafted or damaged",
            )
    claimed = _tensor_bytes(torch.load(path, map_location="meta", weights_only=True))
    if claimed > limit:
        raise RefineError(
            f"{what} {path} claims {claimed:,} bytes of tensors but holds {size:,} bytes",
            hint="the file is crafted or damaged; use the original file",
        )


def _tensor_bytes(obj: Any, depth: int = 0) -> int:
    """Bytes of every distinct tensor storage in a loaded object (meta tensors: sizes only)."""
    seen: dict[int, int] = {}
    stack = [(obj, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Tensor):
            storage = item.untyped_storage()
            seen[storage._cdata] = storage.nbytes()
        elif level < 64 and isinstance(item, Mapping):
            stack.extend((value, level + 1) for value in item.values())
        elif level < 64 and isinstance(item, (list, tuple)):
            stack.extend((value, level + 1) for value in item)
    return sum(seen.values())


def unwrap_state_dict(obj: Any) -> dict[str, Tensor] | None:
    """The name -> tensor dict inside `obj` (plain, or under one of WRAPPER_KEYS), or None when there is none.

    The `module.` prefix (Distributed)DataParallel puts on every key is removed.
    """
    if not isinstance(obj, Mapping):
        return None
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), Mapping):
            return unwrap_state_dict(obj[key])
    if not obj or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        return None
    if all(k.startswith(DATA_PARALLEL_PREFIX) for k in obj):
        return {k[len(DATA_PARALLEL_PREFIX) :]: v for k, v in obj.items()}
    return dict(obj)


def read_state_dict(path: str | Path, what: str) -> dict[str, Tensor]:
    """The state_dict in a file (safely read, unwrapped); RefineError when the file holds none."""
    path = Path(path).expanduser()
    state = unwrap_state_dict(read_torch_file(path, what))
    if state is None:
        raise RefineError(
            f"{path} does not hold a state_dict (a mapping of names to tensors)",
            hint="save weights with torch.save(model.state_dict(), FILE)",
        )
    return state


def drop_prefixes(state: Mapping[str, Tensor], prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    """Drop keys deliberately ignored (the ImageNet classifier `fc.*`)."""
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


def classifier_classes(state: Mapping[str, Tensor], classifiers: tuple[str, ...]) -> int | None:
    """The class count a state_dict was trained for: the output channels of the first classifier found."""
    for name in classifiers:
        for leaf in ("weight", "bias"):
            tensor = state.get(f"{name}.{leaf}")
            if isinstance(tensor, Tensor) and tensor.dim() >= 1:
                return int(tensor.shape[0])
    return None


def describe_mismatch(missing: list[str], unexpected: list[str], wrong_shape: list[str], show: int = 3) -> str | None:
    """One line naming counts and the first few offending keys, or None when everything matches."""
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            more = f", ... (+{len(keys) - show})" if len(keys) > show else ""
            parts.append(f"{len(keys)} {label} ({', '.join(keys[:show])}{more})")
    return "; ".join(parts) or None


def check_keys(
    expected: Mapping[str, tuple[int, ...]], given: Mapping[str, Tensor], optional: tuple[str, ...] = OPTIONAL_KEYS
) -> str | None:
    """Compare a state_dict with an expected key -> shape table; keys ending in `optional` may be absent."""
    missing = [k for k in expected if k not in given and not k.endswith(optional)]
    unexpected = [k for k in given if k not in expected]
    wrong = [
        f"{k}: {tuple(given[k].shape)} vs {tuple(expected[k])}"
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k])
    ]
    return describe_mismatch(missing, unexpected, wrong)


def load_strict(
    module: nn.Module,
    state: Mapping[str, Tensor],
    what: str,
    hint: str = "check that the file is for this model",
    optional: tuple[str, ...] = OPTIONAL_KEYS,
) -> None:
    """load_state_dict that fails with one line naming the offending keys instead of a wall of text or silent skips.

    Every key and shape must match; only keys ending in `optional` (BatchNorm's counter) may be absent.
    """
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    problem = check_keys(expected, state, optional)
    if problem:
        raise RefineError(f"{what} do not fit the model: {problem}", hint=hint)
    module.load_state_dict(state, strict=not optional)
