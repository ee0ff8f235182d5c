"""Limits on untrusted input from the network: when a download is stalled, how far an archive may expand.

Stalls: no byte for a while, or too few bytes over a window. A dead mirror often keeps the connection
open (headers sent, then nothing, or a byte a second); without these rules one such mirror held
`prepare` for minutes per attempt. The defaults abandon it
in well under a minute; REFINE_STALL_TIMEOUT (seconds), REFINE_MIN_RATE (KB/s, 0 = off) and
REFINE_RATE_WINDOW (seconds) change them, and `refine prepare --stall-timeout/--min-rate` set them.

Expansion: an archive whose members add up to more than REFINE_MAX_EXPANSION (default 100) x its own
size is refused before extraction (zip bombs); `refine prepare --max-expansion N` sets it, 0 = no limit.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass

from refine_cli.envvars import env_number

STALL_TIMEOUT_ENV = "REFINE_STALL_TIMEOUT"
MIN_RATE_ENV = "REFINE_MIN_RATE"
RATE_WINDOW_ENV = "REFINE_RATE_WINDOW"
MAX_EXPANSION_ENV = "REFINE_MAX_EXPANSION"
DEFAULT_MAX_EXPANSION = 100.0  # real dataset archives stay under ~10x; zip bombs reach 1000x and more


class Stalled(Exception):
    """This attempt stopped making progress (the mirror is alive but not delivering)."""


@dataclass(frozen=True)
class StallRules:
    """No byte for `stall_seconds`, or under `min_rate` bytes/s averaged over `window` seconds: give up."""

    stall_seconds: float = 15.0
    min_rate: float = 10_000.0
    window: float = 20.0

    @classmethod
    def from_env(cls) -> StallRules:
        """The defaults, overridden by REFINE_STALL_TIMEOUT, REFINE_MIN_RATE (KB/s) and REFINE_RATE_WINDOW."""
        default = cls()
        return cls(
            stall_seconds=env_number(STALL_TIMEOUT_ENV, default.stall_seconds, positive=True),
            min_rate=env_number(MIN_RATE_ENV, default.min_rate / 1000) * 1000,
            window=env_number(RATE_WINDOW_ENV, default.window, positive=True),
        )


def set_stall_rules(stall_seconds: float | None = None, min_rate_kbs: float | None = None) -> None:
    """Set the rules for this process and those it starts (through the environment), as the CLI does."""
    if stall_seconds is not None:
        os.environ[STALL_TIMEOUT_ENV] = f"{stall_seconds:g}"
    if min_rate_kbs is not None:
        os.environ[MIN_RATE_ENV] = f"{min_rate_kbs:g}"
    StallRules.from_env()  # a bad value fails here, before any download starts


class RateGuard:
    """Counts the bytes of one attempt and raises Stalled when the average over the window is too low."""

    def __init__(self, rules: StallRules) -> None:
        self.rules = rules
        self.received = 0
        self._samples: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])

    def update(self, nbytes: int) -> None:
        now = time.monotonic()
        self.received += nbytes
        window = self.rules.window
        if now - self._samples[-1][0] >= window / 30:  # a few dozen samples per window, not one per chunk
            self._samples.append((now, self.received))
        while len(self._samples) > 1 and self._samples[1][0] <= now - window:
            self._samples.popleft()
        since, had = self._samples[0]
        elapsed = now - since
        if self.rules.min_rate and elapsed >= window:
            rate = (self.received - had) / elapsed
            if rate < self.rules.min_rate:
                raise Stalled(
                    f"too slow ({rate / 1000:.1f} KB/s over {elapsed:.0f} s, "
                    f"the minimum is {self.rules.min_rate / 1000:g} KB/s)"
                )


def max_expansion() -> float:
    """The expansion limit in force: REFINE_MAX_EXPANSION if set (0 = no limit), else 100."""
    return env_number(MAX_EXPANSION_ENV, DEFAULT_MAX_EXPANSION)


def set_max_expansion(value: float) -> None:
    """Set the limit for this process and every process it starts (through the environment)."""
    os.environ[MAX_EXPANSION_ENV] = f"{value:g}"
    max_expansion()  # a bad value fails here
