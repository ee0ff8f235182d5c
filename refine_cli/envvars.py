"""Numbers read from REFINE_* environment variables: one parser, one kind of message for a bad value.

Limits travel through the environment so worker processes inherit what `refine --flag` set; a typo
there ('lots', 'nan', 'inf') must be one clear line, never a limit that silently never fires.
"""

from __future__ import annotations

import math
import os

from refine_cli.errors import RefineError


def env_number(
    name: str,
    default: float,
    *,
    positive: bool = False,
    allow_negative: bool = False,
    what: str = "a number",
    hint: str | None = None,
) -> float:
    """`name` as a finite number (or `default` when unset or empty); non-negative unless `allow_negative`."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # nan passes every comparison; inf is no count and no number of seconds
        raise RefineError(
            f"{name}={text!r} is not {what}", hint=hint or f"unset it or give a number such as {default:g}"
        )
    if not allow_negative and (value < 0 or (positive and value == 0)):
        raise RefineError(f"{name}={text!r} must be {'above' if positive else 'at least'} 0", hint=hint or "unset it")
    return value
