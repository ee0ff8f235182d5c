"""Learning-rate schedules: the factor of each group's base learning rate at every optimiser step.

Schedules are per step and expressed as fractions of the run, so a recipe keeps its shape whether it is
run for `--epochs 300` or `--iters 2000`. Every schedule accepts a linear warm-up over the first
`warmup_iters` steps. A new schedule is one function with `@schedule(name, description)` here (plus
its test): the config's checks, `refine train --schedule` and its help all read this registry.
Torch-free, so the command line can list the schedules without importing torch.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ScheduleFactor = Callable[["LrSchedule", int], float]


@dataclass(frozen=True)
class ScheduleKind:
    """One registered schedule: its name, a line for the help, and the factor at a step."""

    name: str
    description: str
    factor: ScheduleFactor


SCHEDULES: dict[str, ScheduleKind] = {}


def schedule(name: str, description: str) -> Callable[[ScheduleFactor], ScheduleFactor]:
    """Register `factor(schedule, step) -> float` under `name`."""

    def register(factor: ScheduleFactor) -> ScheduleFactor:
        SCHEDULES[name] = ScheduleKind(name, description, factor)
        return factor

    return register


@schedule("multistep", "the LW stages: lr x lr_factors[i] between milestones (x1, 0.5, 0.2 over thirds)")
def _multistep(plan: LrSchedule, step: int) -> float:
    return plan.factors[bisect.bisect_right(plan.milestone_steps, step)]


@schedule("poly", "DeepLab's lr x (1 - step / steps) ** poly_power")
def _poly(plan: LrSchedule, step: int) -> float:
    return max(0.0, 1.0 - step / plan.total_steps) ** plan.power


@schedule("constant", "the same lr throughout")
def _constant(plan: LrSchedule, step: int) -> float:
    return 1.0


def describe_schedules() -> str:
    """'multistep (the LW stages: ...), poly (...), constant (...)' for help texts."""
    return ", ".join(f"{kind.name} ({kind.description})" for kind in SCHEDULES.values())


class LrSchedule:
    """Learning-rate factor for a step; a plain object so LambdaLR can save and restore it."""

    def __init__(
        self,
        kind: str,
        total_steps: int,
        milestones: list[float] | None = None,
        factors: list[float] | None = None,
        power: float = 0.9,
        warmup_steps: int = 0,
    ) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r}")
        self.kind = kind
        self.total_steps = max(1, int(total_steps))
        self.milestone_steps = [round(m * self.total_steps) for m in (milestones or [])]
        self.factors = [float(f) for f in (factors or [1.0])]
        self.power = float(power)
        self.warmup_steps = int(warmup_steps)

    @classmethod
    def from_config(cls, optim: Any, total_steps: int) -> LrSchedule:
        """The schedule an `OptimConfig` describes, for a run of `total_steps`."""
        return cls(
            optim.schedule,
            total_steps,
            milestones=optim.milestones,
            factors=optim.lr_factors,
            power=optim.poly_power,
            warmup_steps=optim.warmup_iters,
        )

    def __call__(self, step: int) -> float:
        factor = SCHEDULES[self.kind].factor(self, step)
        if step < self.warmup_steps:
            factor *= (step + 1) / self.warmup_steps
        return factor

    def momentum_restarts(self, optim: Any) -> set[int]:
        """Steps where SGD's momentum is dropped: the milestones of a multistep run with restart_at_milestones.

        LW-RefineNet's stages each built a fresh optimiser; this reproduces that inside one run.
        """
        return set(self.milestone_steps) if self.kind == "multistep" and optim.restart_at_milestones else set()
