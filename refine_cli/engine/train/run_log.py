"""Pictures of a training run: TensorBoard event files while it runs, curves.png when it ends.

    runs/NAME/events.out.tfevents.*   train/loss per logged window, lr/<group> per parameter group,
                                      val/miou, val/pixel_acc, val/mean_acc, val/fwiou and
                                      val_iou/<class> at every validation, plus a few validation
                                      images (image | ground truth | prediction)
    runs/NAME/curves.png              training loss, validation mIoU and learning rate against steps

`tensorboard --logdir runs/` shows every run under its folder name. The trainer calls this module
only where it already logs (every `log_every` steps and at validation), never per step, and only
rank 0 writes. A resumed run purges the events it is about to redo (`purge_step`), so the curves
never show a step twice.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refine_cli.data.format.palette import colorize, palette_array
from refine_cli.figures import fit_height, new_figure, save_figure

if TYPE_CHECKING:
    from torch.optim import Optimizer

    from refine_cli.data.format.unified import DatasetMeta
    from refine_cli.engine.eval.evaluator import EvalReport, SampleCallback

CURVES_FILE = "curves.png"
VAL_IMAGES = 4  # validation images shown in TensorBoard at each validation
VAL_IMAGE_HEIGHT = 160


class TrainLog:
    """TensorBoard writer of one run folder, opened at the first thing it logs (so a failed setup writes nothing)."""

    def __init__(self, out_dir: Path, enabled: bool = True) -> None:
        self.out_dir, self.enabled = Path(out_dir), enabled
        self._writer: Any = None
        self._samples: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []

    def _open(self, step: int) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: events from an earlier (resumed) session at or after this step are dropped
            self._writer = SummaryWriter(log_dir=str(self.out_dir), purge_step=step)
        return self._writer

    def train(self, step: int, loss: float, optimizer: Optimizer) -> None:
        """The mean loss of the last logging window and each parameter group's learning rate."""
        if not self.enabled:
            return
        writer = self._open(step)
        writer.add_scalar("train/loss", loss, step)
        for index, group in enumerate(optimizer.param_groups):
            writer.add_scalar(f"lr/{group.get('name', index)}", group["lr"], step)

    def sample_keeper(self) -> SampleCallback | None:
        """An `evaluate(on_sample=...)` callback keeping the first few validation images (rank 0 only)."""
        if not self.enabled:
            return None
        self._samples = []

        def keep(sample_id: str, image: np.ndarray | None, label: np.ndarray, pred: np.ndarray) -> None:
            if image is not None and len(self._samples) < VAL_IMAGES:
                self._samples.append((sample_id, image, label, pred))

        return keep

    def validation(self, step: int, report: EvalReport, meta: DatasetMeta) -> None:
        """Headline scores, per-class IoU and the kept images of one validation."""
        if not self.enabled:
            return
        writer = self._open(step)
        summary = report.scores.summary()
        for key in ("miou", "pixel_acc", "mean_acc", "fwiou"):
            if summary[key] is not None:
                writer.add_scalar(f"val/{key}", summary[key], step)
        for index, (name, iou) in enumerate(zip(report.class_names, report.scores.iou, strict=True)):
            if not math.isnan(iou):
                writer.add_scalar(f"val_iou/{index:03d}_{name}", float(iou), step)
        table = palette_array(meta.palette, meta.num_classes, meta.ignore_index)
        for sample_id, image, label, pred in self._samples:
            panels = [fit_height(image, VAL_IMAGE_HEIGHT, nearest=False)]
            panels += [fit_height(colorize(mask, table), VAL_IMAGE_HEIGHT, nearest=True) for mask in (label, pred)]
            writer.add_image(f"val_images/{sample_id}", np.concatenate(panels, axis=1), step, dataformats="HWC")
        self._samples = []
        writer.flush()

    def finish(self, rows: list[dict[str, Any]]) -> Path | None:
        """Close the event file and draw curves.png from the run's metrics rows (resumed history included)."""
        self.close()
        if not self.enabled or not rows:
            return None
        return plot_curves(rows, self.out_dir / CURVES_FILE)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def plot_curves(rows: list[dict[str, Any]], path: Path) -> Path:
    """Training loss, validation mIoU and the learning rate against the optimiser step.

    Few points are drawn as markers too: a run with one logged point shows that point, not an empty panel.
    """
    train = [row for row in rows if row.get("kind") == "train" and row.get("loss") is not None]
    val = [(row["step"], 100 * row["miou"]) for row in rows if row.get("kind") == "val" and row.get("miou") is not None]
    figure = new_figure(7.0, 6.5)
    loss_axes, miou_axes, lr_axes = figure.subplots(3, 1, sharex=True)
    _series(loss_axes, [(row["step"], row["loss"]) for row in train], "#4878a8", "training loss")
    _series(miou_axes, val, "#d0502a", "validation mIoU %")
    if val:
        best = max(val, key=lambda point: point[1])
        miou_axes.annotate(f"best {best[1]:.1f}", best, fontsize=8, textcoords="offset points", xytext=(4, -12))
    rates = [(row["step"], row["lr"]) for row in train if row.get("lr") is not None]
    _series(lr_axes, rates, "#5a9e4b", "learning rate\n(encoder)")
    lr_axes.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    lr_axes.set_xlabel("step")
    figure.suptitle(path.parent.name, fontsize=10)
    return save_figure(figure, path)


def _series(axes: Any, points: list[tuple[float, float]], colour: str, label: str) -> None:
    """One curve; with fewer than 30 points each is marked (a single point drawn as a line is invisible)."""
    if points:
        steps, values = zip(*points, strict=True)
        axes.plot(steps, values, color=colour, linewidth=1.2, marker="o" if len(points) < 30 else None, markersize=4)
    axes.set_ylabel(label)
    axes.grid(alpha=0.3)
