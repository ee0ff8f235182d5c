"""User text is data: paths and class names are printed and drawn as typed, never as markup or control codes.

docs/reliability.md "One line, exit 2": Rich markup in a path or class name, matplotlib mathtext in a
class name, control characters (NUL, newline, terminal escapes) in class names and paths, empty class
names, and a class list too long to handle.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.format.unified import UnifiedDataset
from tests.support import custom_exports as ex
from tests.support.checkpoints import save_tiny_checkpoint
from tests.support.prepare_runner import run_prepare

ESC = "\x1b"


def _run(*args: str):  # noqa: ANN202 - click Result
    return CliRunner().invoke(app, list(args))


def test_markup_and_escape_sequences_in_a_path_print_as_typed(tmp_path: Path) -> None:
    weird = tmp_path / f"a[/red]b[bold]{ESC}[2Jc"
    result = _run("check", str(weird))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "a[/red]b[bold]" in result.output and "\\x1b[2Jc" in result.output  # literal, escaped
    assert ESC not in result.output and len(result.output.strip().splitlines()) == 1


def test_class_names_with_markup_and_mathtext_reach_the_gallery_and_the_report(tmp_path: Path) -> None:
    export = tmp_path / "export"
    ex.folder_export(export, n=5)
    classes = tmp_path / "classes.txt"
    classes.write_text("background\n$x^$ [/red]\n$y_\n")
    run = run_prepare(["custom", "odd", "--from", str(export), "--classes", str(classes), "--root", str(tmp_path)])
    assert run.exit_code == 0, run.output
    assert "$x^$ [/red]" in run.output  # the class table shows the name as typed
    data = tmp_path / "odd"
    gallery = _run("check", str(data), "--gallery", str(tmp_path / "gallery"))
    assert gallery.exit_code == 0, gallery.output
    assert all((tmp_path / "gallery" / name).stat().st_size > 0 for name in ("class_frequency.png", "samples.png"))
    meta = UnifiedDataset(data).meta
    checkpoint = save_tiny_checkpoint(tmp_path / "odd.pt", meta.classes, meta.palette)
    report = _run("eval", "--checkpoint", str(checkpoint), "--data", str(data), "--split", "train",
                  "--device", "cpu", "--report", str(tmp_path / "report"))  # fmt: skip
    assert report.exit_code == 0, report.output
    page = (tmp_path / "report" / "report.html").read_text()
    assert "$x^$ [/red]" in page and "$y_" in page


def test_control_characters_and_empty_names_in_a_class_list_are_refused(tmp_path: Path) -> None:
    export = tmp_path / "export"
    ex.folder_export(export, n=3)
    for text, expected in (
        (json.dumps(["background", f"cat{ESC}[2J", "dog"]), "contains control characters"),
        (json.dumps(["background", "ca\nt", "dog"]), "contains control characters"),
        (json.dumps(["background", "ca\x00t", "dog"]), "contains control characters"),
        (json.dumps(["background", "  ", "dog"]), "a class name is empty"),
    ):
        classes = tmp_path / "classes.json"
        classes.write_text(text)
        run = run_prepare(["custom", "bad", "--from", str(export), "--classes", str(classes), "--root", str(tmp_path)])
        assert run.exit_code == 2 and expected in run.output, run.output
        assert ESC not in run.output and "\x00" not in run.output and "Traceback" not in run.output
        assert not (tmp_path / "bad" / "meta.json").exists()


def test_a_hundred_thousand_coco_categories_are_refused_at_once(tmp_path: Path) -> None:
    image = ex.save_rgb(tmp_path / "coco" / "a.png", ex.photo(0))
    categories = [{"id": i, "name": f"c{i}"} for i in range(1, 100_001)]
    doc = ex.coco_document([(image.name, [])], categories)
    source = ex.write_json(tmp_path / "coco" / "a.json", doc)
    started = time.monotonic()
    run = run_prepare(["custom", "many", "--from", str(source), "--keep-empty", "--root", str(tmp_path / "data")])
    assert run.exit_code == 2 and "at most 254 fit" in run.output, run.output
    assert time.monotonic() - started < 10  # a quadratic check first took minutes


def test_a_meta_json_with_an_empty_class_name_is_never_written(tmp_path: Path) -> None:
    from refine_cli.data.format.unified import DatasetMeta, UnifiedWriter
    from refine_cli.errors import RefineError

    writer = UnifiedWriter(tmp_path, "d")
    writer.prepare_dirs()
    meta = DatasetMeta(name="d", num_classes=2, classes=["background", ""], palette=[[0, 0, 0], [1, 1, 1]])
    try:
        writer.write_meta(meta)
    except RefineError as error:
        assert "a class name is empty" in error.message
    else:
        raise AssertionError("an empty class name was written")
    assert not (tmp_path / "d" / "meta.json").exists()
