"""Reading PyTorch files safely: weights only, and one clear line for every way a file can be wrong."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from refine_cli.errors import RefineError


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
        return torch.load(path, map_location="cpu", weights_only=True)
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
