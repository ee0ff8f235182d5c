"""Pictures opened after the CLI wrote them: eval --report, train TensorBoard + curves, bench --plot, check gallery."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.cli import error_line, run_cli
from tests.support.pictures import assert_picture, page_images
from tests.support.workspaces import ShapesWorkspace

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(*args: str | Path):  # noqa: ANN202 - click Result
    return run_cli(*args)


def _one_line_error(result) -> str:  # noqa: ANN001 - click Result
    return error_line(result, alone=True)


def _check_report(folder: Path, class_names: list[str]) -> str:
    page = folder / "report.html"
    text = page.read_text(encoding="utf-8")
    images, links = page_images(page)
    assert {path.name for path in images} >= {"per_class.png", "confusion.png", "worst_01.png"}
    for image in images:
        assert_picture(image)
    assert all(link.is_file() for link in links)
    for name in class_names:
        assert f">{name}" in text  # in the per-class table (after its colour swatch)
    assert "rgb(" in text and "Top confusions" in text
    return text


def test_eval_report_for_a_checkpoint_and_for_saved_predictions(
    shapes_workspace: ShapesWorkspace, tmp_path: Path
) -> None:
    ws = shapes_workspace
    result = _run("eval", "--checkpoint", ws.checkpoint, "--data", ws.data, "--device", "cpu", "--report",
                  tmp_path / "ck", "--save-pred", tmp_path / "pred", "--json", tmp_path / "e.json")  # fmt: skip
    assert result.exit_code == 0, result.output
    text = _check_report(tmp_path / "ck", ws.dataset.meta.classes)
    scores = json.loads((tmp_path / "e.json").read_text())
    assert f"<b>{100 * scores['miou']:.2f}</b>mIoU" in text and str(ws.checkpoint) in text and "flip" in text
    assert len(_csv_rows(tmp_path / "ck")) == scores["num_images"]
    # wrong pixels are drawn in the colour the page names, and no class is drawn in it (it was red, a class colour)
    wrong = tuple(int(v) for v in re.search(r'rgb\((\d+),(\d+),(\d+)\)"></span> wrong', text).groups())
    assert wrong not in {tuple(colour) for colour in ws.dataset.meta.palette}
    worst = np.asarray(Image.open(tmp_path / "ck" / "gallery" / "worst_01.png").convert("RGB"))
    assert (worst[:, 3 * worst.shape[1] // 4 :] == wrong).all(axis=2).sum() > 50  # in the errors panel

    rescored = _run("eval", "--pred", tmp_path / "pred", "--data", ws.data, "--report", tmp_path / "p")
    assert rescored.exit_code == 0, rescored.output
    _check_report(tmp_path / "p", ws.dataset.meta.classes)
    # the same predictions give the same per-image scores either way
    assert (tmp_path / "p" / "per_image.csv").read_text() == (tmp_path / "ck" / "per_image.csv").read_text()


def test_error_colour_is_none_of_the_class_colours() -> None:
    from refine_cli.class_tables import voc_palette
    from refine_cli.data.format.palette import palette_array
    from refine_cli.engine.eval.report_figures import error_colour, error_map

    for palette in (voc_palette(21), [[0, 0, 0], [230, 25, 25], [255, 0, 255], [250, 10, 10], [0, 255, 255]]):
        table = palette_array(palette, len(palette))
        wrong = error_colour(table, len(palette), 255)
        nearest = min(float(np.linalg.norm(np.subtract(wrong, colour))) for colour in palette)
        assert nearest >= 100, (wrong, nearest)
        label = np.array([[0, 1], [1, 255]], np.uint8)
        drawn = error_map(np.zeros((2, 2, 3), np.uint8), label, np.ones_like(label), 255, table[255], wrong)
        assert tuple(drawn[0, 0]) == wrong and tuple(drawn[0, 1]) != wrong and tuple(drawn[1, 1]) == tuple(table[255])


def _csv_rows(report: Path) -> list[dict[str, str]]:
    with open(report / "per_image.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _reference_miou(label: np.ndarray, pred: np.ndarray, ignore: int = 255) -> float:
    """Plain per-image mIoU: classes in the label or the prediction, ignored pixels left out."""
    valid = label != ignore
    truth, guess = label[valid], pred[valid]
    ious = [((truth == c) & (guess == c)).sum() / ((truth == c) | (guess == c)).sum() for c in np.union1d(truth, guess)]
    return float(np.mean(ious))


def test_eval_report_ranks_images_worst_first(shapes_workspace: ShapesWorkspace, tmp_path: Path) -> None:
    """per_image.csv and the gallery list images by per-image mIoU, worst first, not in dataset order."""
    dataset = shapes_workspace.dataset
    ids = dataset.split_ids("train")
    wrong_rows = [6, 30, 0, 44, 12, 20, 2, 56]  # a scrambled amount of damage per image, in dataset order
    preds, expected = tmp_path / "pred", {}
    preds.mkdir()
    for sample_id, rows in zip(ids, wrong_rows, strict=True):
        label = dataset.read_label(sample_id)
        pred = np.where(label == 255, 0, label).astype(np.uint8)
        pred[:rows] = (pred[:rows] + 1) % dataset.meta.num_classes  # the top rows one class off
        Image.fromarray(pred).save(preds / f"{sample_id}.png")
        expected[sample_id] = _reference_miou(label, pred)
    ranked = sorted(ids, key=expected.__getitem__)
    assert len(set(expected.values())) == len(ids) and ranked not in (ids, ids[::-1])  # the order is the test's
    result = _run("eval", "--pred", preds, "--data", dataset.path, "--split", "train", "--report", tmp_path / "r")
    assert result.exit_code == 0, result.output

    rows = _csv_rows(tmp_path / "r")
    assert [row["sample_id"] for row in rows] == ranked
    assert [float(row["miou"]) for row in rows] == pytest.approx([expected[i] for i in ranked], abs=1e-6)
    page = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    gallery = re.findall(r"worst #(\d+): <b>([^<]+)</b>", page)
    assert gallery == [(str(rank), sample_id) for rank, sample_id in enumerate(ranked[: len(gallery)], start=1)]
    assert len(gallery) >= 4  # enough ranks that a shuffled gallery cannot pass by chance
    for rank in range(1, len(gallery) + 1):
        assert_picture(tmp_path / "r" / "gallery" / f"worst_{rank:02d}.png")


def test_eval_report_refuses_an_input_folder(shapes_workspace: ShapesWorkspace, tmp_path: Path) -> None:
    data = str(shapes_workspace.data)
    line = _one_line_error(_run("eval", "--checkpoint", shapes_workspace.checkpoint, "--data", data, "--report",
                                f"{data}/report"))  # fmt: skip
    assert "--report" in line and "is inside the --data" in line
    assert not (shapes_workspace.data / "report").exists()
    failed = _run("eval", "--checkpoint", str(tmp_path / "missing.pt"), "--data", data, "--report", str(tmp_path / "r"))
    assert "missing.pt" in _one_line_error(failed) and not (tmp_path / "r").exists()  # no empty folder left behind
    nested = tmp_path / "new" / "sub" / "r"
    failed = _run("eval", "--checkpoint", str(tmp_path / "missing.pt"), "--data", data, "--report", str(nested))
    assert "missing.pt" in _one_line_error(failed) and not (tmp_path / "new").exists()
    as_file = _run(
        "eval", "--checkpoint", shapes_workspace.checkpoint, "--data", data, "--report", str(tmp_path / "r.html")
    )
    line = _one_line_error(as_file)  # not a folder named r.html
    assert "names a file, but --report writes a folder" in line and f"then open {tmp_path / 'r'}/report.html" in line
    assert not (tmp_path / "r.html").exists()


def test_train_writes_tensorboard_events_and_curves(tiny_dataset: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = tiny_dataset
    run = tmp_path / "runs" / "tiny"
    fast = ["--model", "lw-refinenet-mobilenetv2", "--crop", "32", "--batch", "2", "--workers", "0", "--device", "cpu",
            "--set", "data.min_short_side=null", "--set", "train.log_every=1", "--val-every", "2"]  # fmt: skip
    result = _run("train", "--recipe", "demo-shapes", "--data", str(data), "--out", str(run), *fast, "--iters", "2")
    assert result.exit_code == 0, result.output
    assert "tensorboard --logdir" in result.output
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(run)) as stale:  # as if the first run had been killed after step 3's log
        stale.add_scalar("train/loss", 99.0, 3)
    resumed = _run("train", "--resume", str(run), "--iters", "4")
    assert resumed.exit_code == 0, resumed.output

    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [1, 2, 3, 4] and losses[2].value != 99.0  # redone steps replace stale ones
    assert {"lr/encoder", "lr/decoder", "val/pixel_acc", "val/mean_acc", "val_iou/000_background"} <= set(
        tags["scalars"]
    )
    miou = events.Scalars("val/miou")
    assert [e.step for e in miou] == [2, 4] and all(0 <= e.value <= 1 for e in miou)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert miou[-1].value == pytest.approx([row for row in metrics if row["kind"] == "val"][-1]["miou"])
    assert len(tags["images"]) == 2 and events.Images(tags["images"][0])[-1].step == 4
    assert_picture(run / "curves.png")


def _drawn(monkeypatch: pytest.MonkeyPatch, module: object) -> list:
    """The matplotlib figures `module` saves from now on (each still written to its file)."""
    figures: list = []
    save = module.save_figure  # type: ignore[attr-defined]
    monkeypatch.setattr(module, "save_figure", lambda figure, path, **kw: figures.append(figure) or save(figure, path))
    return figures


def test_curves_show_a_single_logged_point_and_the_learning_rate(tmp_path: Path, monkeypatch) -> None:
    """One logged step was drawn as a line of one point (invisible); the learning rate had no panel."""
    from refine_cli.engine.train import run_log

    figures = _drawn(monkeypatch, run_log)
    rows = [{"kind": "train", "step": 1, "loss": 1.5, "lr": 5e-4}, {"kind": "val", "step": 1, "miou": 0.2}]
    path = run_log.plot_curves(rows, tmp_path / "run" / "curves.png")
    loss, miou, rate = figures[0].axes
    for axes, value in ((loss, 1.5), (miou, 20.0), (rate, 5e-4)):
        (line,) = axes.get_lines()
        assert list(line.get_ydata()) == [value] and line.get_marker() not in (None, "None", "", " "), axes
    assert "learning rate" in rate.get_ylabel() and rate.get_xlabel() == "step"
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    top = pixels[: pixels.shape[0] // 3]  # the loss panel: its one point is on the picture
    assert (np.abs(top - (72, 120, 168)).sum(axis=2) < 40).sum() > 10


def test_bench_plot(tmp_path: Path) -> None:
    plot = tmp_path / "speed.png"
    result = _run("bench", "-m", "lw-refinenet-mobilenetv2", "-m", "tv:lraspp_mobilenet_v3_large", "--size", "32",
                  "--iters", "2", "--warmup", "0", "--device", "cpu", "--plot", str(plot))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert_picture(plot)
    assert "cannot write a plot" in _one_line_error(_run("bench", "-m", "lw-refinenet-mobilenetv2", "--plot", "x.jpg"))


def test_check_gallery(shapes_workspace: ShapesWorkspace, tmp_path: Path, monkeypatch) -> None:
    from refine_cli.data.format import gallery

    figures = _drawn(monkeypatch, gallery)
    data = shapes_workspace.data
    result = _run("check", str(data), "--gallery", str(tmp_path / "g"), "--gallery-samples", "4",
                  "--json", str(tmp_path / "check.json"))  # fmt: skip
    assert result.exit_code == 0, result.output
    # the chart's numbers are the table's (it said background 80% where the table said 74.09%), axis ends at 100%
    report = json.loads((tmp_path / "check.json").read_text())
    chart = figures[0].axes[0]
    shown = [text.get_text() for text in chart.texts]
    assert shown == [f"{100 * row['fraction']:.2f}% / {row['images']:,} img" for row in report["classes"]]
    for row in report["classes"]:
        assert f" {100 * row['fraction']:.2f} " in result.stdout  # the same figure in the check table
    assert chart.get_xlim()[1] == 100 and chart.get_xscale() == "log"
    ignore = 100 * report["ignore_pixels"] / (sum(row["pixels"] for row in report["classes"]) + report["ignore_pixels"])
    assert f"ignore {ignore:.2f}%" in chart.get_xlabel()
    frequency = assert_picture(tmp_path / "g" / "class_frequency.png", min_colours=6)
    samples = assert_picture(tmp_path / "g" / "samples.png", min_colours=50)
    assert frequency.shape[0] > 200 and samples.shape[1] > 800
    line = _one_line_error(_run("check", data, "--gallery", data))
    assert "would overwrite the dataset" in line
    same = tmp_path / "same"  # --json and --gallery one new path: refused before the work, nothing left behind
    line = _one_line_error(_run("check", data, "--gallery", same, "--json", same))
    assert "are the same path" in line and not same.exists()
    before = (tmp_path / "g" / "samples.png").read_bytes()  # was: the JSON replaced the picture, exit 0
    line = _one_line_error(_run("check", data, "--gallery", tmp_path / "g", "--json", tmp_path / "g" / "samples.png"))
    assert "are the same path" in line and (tmp_path / "g" / "samples.png").read_bytes() == before


def test_eval_json_may_not_land_in_the_report_folder(shapes_workspace: ShapesWorkspace, tmp_path: Path) -> None:
    """--json onto the report's own files (per_image.csv) or onto the folder itself: refused before any work."""
    report = tmp_path / "r"
    report.mkdir()
    (report / "per_image.csv").write_text("an earlier report\n")
    ws = shapes_workspace
    base = ["eval", "--checkpoint", ws.checkpoint, "--data", ws.data, "--report", report]
    line = _one_line_error(_run(*base, f"--json={report / 'per_image.csv'}"))
    assert "--json" in line and "is inside the --report" in line
    assert "is a folder" in _one_line_error(_run(*base, f"--json={report}"))  # before any evaluation
    assert (report / "per_image.csv").read_text() == "an earlier report\n"
