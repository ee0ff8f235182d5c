"""`refine eval --report DIR`: one HTML page with the numbers, the settings and the pictures behind them.

    DIR/report.html      headline metrics, every setting, per-class table (names + colours), top confusions
    DIR/per_class.png    IoU and accuracy per class, sorted; absent classes marked
    DIR/confusion.png    the row-normalised confusion matrix, class names on both axes
    DIR/gallery/*.png    worst (and a few best) images by per-image mIoU: image | truth | prediction | errors
    DIR/per_image.csv    every image's mIoU and pixel accuracy, worst first

The page references the images as files next to it, so it opens offline in any browser and the
folder can be copied or zipped as a whole. Every file is written atomically and report.html last:
if report.html exists, the report is complete.
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.format.imageio import encode_image_png
from refine_cli.data.format.palette import palette_array
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.engine.eval.evaluator import EvalReport
from refine_cli.engine.eval.per_image import GalleryItem, PerImageScores
from refine_cli.engine.eval.report_figures import (
    confusion_heatmap,
    error_colour,
    gallery_row,
    per_class_chart,
    top_confusions,
)
from refine_cli.errors import RefineError
from refine_cli.fileio import write_bytes_atomic, write_text_atomic

REPORT_FILE = "report.html"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 2px 10px; text-align: left; }
tr:nth-child(even) { background: #f6f6f6; } .numbers td:nth-child(n+3) { text-align: right; }
.swatch { display: inline-block; width: 14px; height: 14px; border: 1px solid #888; vertical-align: middle; }
.headline { display: flex; gap: 2em; flex-wrap: wrap; } .headline div { font-size: 1.1em; }
.headline b { display: block; font-size: 1.8em; } .absent { color: #999; }
figure { margin: 1em 0; } figcaption { font-size: 0.9em; color: #444; margin-bottom: 4px; }
img { max-width: 100%; } .legend span { margin-right: 1em; font-size: 0.85em; white-space: nowrap; }
"""


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _swatch(colour: np.ndarray) -> str:
    red, green, blue = (int(v) for v in colour)
    return f'<span class="swatch" style="background: rgb({red},{green},{blue})"></span>'


def _setting(key: str, value: Any) -> str:
    """A setting as a person reads it (the JSON keeps the raw values)."""
    if key == "scales" and value:
        return ", ".join(f"{scale:g}" for scale in value)
    if key == "flip" and value is not None:
        return "on" if value else "off"
    if key == "tile":
        return f"{value[0]}x{value[1]} sliding window" if value else "whole image"
    if key == "crf":
        return "off" if not value else ", ".join(f"{k}={v}" for k, v in value.items())
    if key == "short_side":
        if not value:
            return "as given"
        return f"at most {value[1]} px first" if value[0] <= 1 else f"brought into {value[0]}-{value[1]} px first"
    if key == "protocol":
        return "custom" if value is None else str(value)
    return "n/a" if value is None else str(value)


def _settings_rows(report: EvalReport) -> list[tuple[str, str]]:
    data = report.to_json()
    keys = ("checkpoint", "model", "runtime", "precision", "predictions", "dataset", "dataset_path", "split")
    keys += ("protocol", "scales", "short_side", "flip", "upsample", "tile", "crf")
    if data.get("predictions"):  # scored files: no model, no test-time settings
        keys = ("predictions", "dataset", "dataset_path", "split")
    rows = [(key.replace("_", " "), _setting(key, data.get(key))) for key in keys]
    if report.settings.get("device"):
        rows.append(("device", str(report.settings["device"])))
    rows.append(("images", f"{report.num_images:,}"))
    rows.append(("pixels scored", f"{report.scores.num_pixels:,}"))
    rows.append(("evaluation time", f"{report.seconds:.1f} s"))
    rows.append(("report written", _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()))
    return rows


def _table(
    rows: list[tuple[str, ...]], header: tuple[str, ...] | None = None, raw: bool = False, numbers: bool = False
) -> str:
    """An HTML table; cells are escaped unless `raw` (cells built here, e.g. swatches); `numbers` right-aligns."""
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{cell if raw else html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    opening = '<table class="numbers">' if numbers else "<table>"
    return f"{opening}{head}{body}</table>"


def _class_rows(report: EvalReport, matrix: np.ndarray, table: np.ndarray) -> list[tuple[str, ...]]:
    scores, names = report.scores, report.class_names
    truth_pixels = matrix.sum(axis=1)
    total = max(int(truth_pixels.sum()), 1)
    rows = []
    for index, name in enumerate(names):
        absent = math.isnan(scores.iou[index])
        label = f'<span class="absent">{html.escape(name)} (absent)</span>' if absent else html.escape(name)
        rows.append(
            (
                str(index),
                _swatch(table[index]),
                label,
                _pct(float(scores.iou[index])),
                _pct(float(scores.acc[index])),
                f"{100 * truth_pixels[index] / total:.2f}",
            )
        )
    return rows


def _legend(item: GalleryItem, names: list[str], table: np.ndarray) -> str:
    present = sorted(set(np.unique(item.label).tolist()) | set(np.unique(item.pred).tolist()))
    parts = [f"<span>{_swatch(table[v])} {html.escape(names[v])}</span>" for v in present if v < len(names)]
    return f'<div class="legend">{"".join(parts)}</div>'


def _gallery(
    items: list[GalleryItem], kind: str, out_dir: Path, dataset: UnifiedDataset, table: np.ndarray, wrong: tuple
) -> str:
    meta = dataset.meta
    blocks = []
    for rank, item in enumerate(items, start=1):
        image = item.image if item.image is not None else dataset.read_image(item.sample_id)
        if image.shape[:2] != item.label.shape:
            raise RefineError(
                f"{dataset.image_path(item.sample_id)} is {image.shape[1]}x{image.shape[0]} but its label is "
                f"{item.label.shape[1]}x{item.label.shape[0]}",
                hint="the data set is inconsistent; run `refine check` on it",
            )
        row = gallery_row(image, item.label, item.pred, table, meta.ignore_index, wrong)
        name = f"gallery/{kind}_{rank:02d}.png"
        write_bytes_atomic(out_dir / name, encode_image_png(row))
        caption = (
            f"{kind} #{rank}: <b>{html.escape(item.sample_id)}</b>, mIoU {_pct(item.miou)}%, "
            f"pixel accuracy {_pct(item.pixel_acc)}%"
        )
        alt = html.escape(f"{item.sample_id}: image, ground truth, prediction, errors")
        blocks.append(
            f'<figure><figcaption>{caption}</figcaption><img src="{name}" alt="{alt}">'
            f"{_legend(item, list(meta.classes), table)}</figure>"
        )
    return "\n".join(blocks)


def write_eval_report(out_dir: Path, report: EvalReport, samples: PerImageScores, dataset: UnifiedDataset) -> Path:
    """Write the report folder for `report` (scores) and `samples` (the per-image callback); returns the page."""
    out_dir = Path(out_dir)
    meta = dataset.meta
    names = list(report.class_names)
    table = palette_array(meta.palette, meta.num_classes, meta.ignore_index)
    matrix = samples.matrix.to_numpy()
    per_class_chart(names, report.scores.iou, report.scores.acc, out_dir / "per_class.png")
    confusion_heatmap(matrix, names, out_dir / "confusion.png")
    worst, best = samples.worst(), samples.best()
    wrong = error_colour(table, meta.num_classes, meta.ignore_index)  # a colour no class is drawn in
    worst_html = _gallery(worst, "worst", out_dir, dataset, table, wrong)
    best_html = _gallery(best, "best", out_dir, dataset, table, wrong)
    current = {f"{kind}_{rank:02d}.png" for kind, items in (("worst", worst), ("best", best))
               for rank in range(1, len(items) + 1)}  # fmt: skip
    for stale in (out_dir / "gallery").glob("*_[0-9][0-9].png"):  # from an earlier report into the same folder
        if stale.name not in current and stale.name.startswith(("worst_", "best_")):
            stale.unlink()
    write_text_atomic(out_dir / "per_image.csv", _per_image_csv(samples))
    write_text_atomic(out_dir / REPORT_FILE, _page(report, matrix, table, worst_html, best_html, wrong))
    return out_dir / REPORT_FILE


def _per_image_csv(samples: PerImageScores) -> str:
    """Every image's scores, worst first; empty cells for an image with no scored pixel."""
    ranked = sorted(samples.scores.items(), key=lambda kv: (math.isnan(kv[1][0]), kv[1][0], kv[0]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("sample_id", "miou", "pixel_acc"))
    for sample_id, values in ranked:
        writer.writerow((sample_id, *("" if math.isnan(v) else f"{v:.6f}" for v in values)))
    return buffer.getvalue()


def _page(
    report: EvalReport, matrix: np.ndarray, table: np.ndarray, worst_html: str, best_html: str, wrong: tuple
) -> str:
    summary = report.scores.summary()
    names = list(report.class_names)
    what = report.settings.get("checkpoint") or report.settings.get("predictions") or "?"
    title = f"refine eval: {what} on {report.settings.get('dataset')}/{report.settings.get('split')}"
    headline = (
        "".join(
            f"<div><b>{_pct(summary[key])}</b>{label} %</div>"
            for key, label in (("miou", "mIoU"), ("pixel_acc", "pixel accuracy"), ("mean_acc", "mean accuracy"))
        )
        + f"<div><b>{_pct(summary['fwiou'])}</b>FWIoU %</div>"
    )
    confusions = top_confusions(matrix, names)
    confusion_rows = [
        (c["truth"], c["predicted"], f"{100 * float(c['fraction']):.1f}", f"{c['pixels']:,}")  # type: ignore[arg-type]
        for c in confusions
    ]
    skipped = report.scores.skipped
    skipped_note = (
        f"<p>{len(skipped)} class(es) absent from labels and predictions, skipped in the means: "
        f"{html.escape(', '.join(names[i] for i in skipped))}.</p>"
        if skipped
        else ""
    )
    parts: list[Any] = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<div class="headline">{headline}</div>',
        "<h2>Settings</h2>",
        _table(_settings_rows(report)),
        "<h2>Per-class scores</h2>",
        skipped_note,
        '<img src="per_class.png" alt="per-class IoU and accuracy">',
        _table(
            _class_rows(report, matrix, table),
            ("#", "colour", "class", "IoU %", "acc %", "pixels %"),
            raw=True,
            numbers=True,
        ),
        "<h2>Confusion matrix</h2>",
        "<p>Rows: ground truth; columns: prediction; each row sums to 100% of that class's labelled pixels.</p>",
        '<img src="confusion.png" alt="normalised confusion matrix">',
        "<h3>Top confusions</h3>",
        _table(confusion_rows, ("ground truth", "predicted as", "% of its pixels", "pixels"), numbers=True)
        if confusion_rows
        else "<p>No pixel was confused.</p>",
        "<h2>Worst images by per-image mIoU</h2>",
        f"<p>image | ground truth | prediction | errors ({_swatch(np.array(wrong))} wrong, a colour no class has; "
        "grey: right; the ignore colour: not scored). "
        "All scores: <a href='per_image.csv'>per_image.csv</a>.</p>",
        worst_html or "<p>No scored image.</p>",
        "<h2>Best images</h2>" if best_html else "",
        best_html,
        "</body></html>",
    ]
    return "\n".join(str(part) for part in parts if part)
