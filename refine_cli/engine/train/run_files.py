"""The run folder of `refine train`: config, checkpoints, metrics log and resume state.

    runs/NAME/config.yaml    the resolved config (also inside every checkpoint)
    runs/NAME/last.pt        latest state, with everything `--resume` needs in `extra["resume"]`
    runs/NAME/best.pt        weights with the best validation mIoU so far
    runs/NAME/metrics.jsonl  one JSON object per logged training window / validation
    runs/NAME/metrics.csv    the same rows as a table

Every file is replaced atomically, so a run killed at any moment (kill -9 included) leaves the
previous complete version: `--resume` then continues from the last complete `last.pt`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from refine_cli.errors import RefineError
from refine_cli.fileio import write_text_atomic

CONFIG_FILE = "config.yaml"
LAST = "last.pt"
BEST = "best.pt"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
CSV_COLUMNS = ("kind", "step", "epoch", "loss", "lr", "img_s", "miou", "pixel_acc", "mean_acc", "elapsed_s")


def find_resume_checkpoint(run: str | os.PathLike[str]) -> Path:
    """`runs/NAME` or `runs/NAME/last.pt` -> the checkpoint to resume from."""
    path = Path(run)
    if path.is_dir():
        path = path / LAST
        if not path.is_file():
            raise RefineError(
                f"{run} has no {LAST} to resume from",
                hint="the run stopped before its first checkpoint; start it again without --resume",
            )
    elif not path.is_file():
        raise RefineError(f"run to resume not found: {run}", hint="give the run folder (the --out of that run)")
    return path


class SaveSchedule:
    """When to write last.pt between validation points: every N steps and every M minutes of wall clock.

    VOC validates every 5 epochs (hours apart); without this an interruption loses all of it. The
    step rule gives the same answer on every rank; the clock rule is checked every
    `clock_check_steps` steps and passed through `agree` (a broadcast from rank 0 under DDP), so
    all ranks save together.
    """

    def __init__(
        self,
        every_steps: int,
        every_minutes: float,
        clock_check_steps: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_steps, self.every_seconds = every_steps, every_minutes * 60.0
        self.clock_check_steps, self.clock = clock_check_steps, clock
        self.last_save = clock()

    def due(self, step: int, agree: Callable[[bool], bool] = bool) -> bool:
        """Whether last.pt should be written after `step`."""
        if self.every_steps > 0 and step % self.every_steps == 0:
            return True
        if self.every_seconds <= 0 or step % self.clock_check_steps:
            return False
        return agree(self.clock() - self.last_save >= self.every_seconds)

    def saved(self) -> None:
        """Restart the wall-clock interval (after every write of last.pt, validation points included)."""
        self.last_save = self.clock()


def capture_rng() -> dict[str, Any]:
    """This process's random states (torch CPU/CUDA, numpy, python) as checkpoint-safe plain values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng` (CUDA states only when the device count matches)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def optimizer_state_from_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """Checkpoints store mapping keys as strings; the optimizer's per-parameter state is keyed by int."""
    return {**state, "state": {int(key): value for key, value in state.get("state", {}).items()}}


class MetricsLog:
    """Rows of the metrics files, rewritten atomically whenever they are flushed."""

    def __init__(self, folder: Path, enabled: bool = True) -> None:
        self.folder = folder
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []

    def load_until(self, step: int) -> None:
        """Keep the rows of a resumed run up to its checkpoint (later ones are about to be redone)."""
        path = self.folder / METRICS_JSONL
        if not path.is_file():
            return
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and int(row.get("step", step + 1)) <= step:
                self.rows.append(row)

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def flush(self) -> None:
        if not self.enabled:
            return
        write_text_atomic(self.folder / METRICS_JSONL, "".join(json.dumps(row) + "\n" for row in self.rows))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({key: _csv_value(row.get(key)) for key in CSV_COLUMNS})
        write_text_atomic(self.folder / METRICS_CSV, buffer.getvalue())


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value
