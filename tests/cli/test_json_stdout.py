"""`--json -` makes stdout the JSON alone, for every command that has --json (found by walking the tree).

The human report (tables, summaries) still appears, on stderr. Commands whose work takes minutes or
needs downloads (models' full catalogue, export, convert, train, the public datasets) run their real
command-line code with the engine call replaced by one returning a real result object.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from refine_cli.cli._help import walk_commands
from refine_cli.cli.app import app
from tests.support.checkpoints import TINY_MODEL, shapes_with_checkpoint
from tests.support.custom_exports import cvat_voc_export

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _commands_with_json() -> list[str]:
    root = typer.main.get_command(app)
    return sorted(
        path
        for path, command in walk_commands(root)
        if any("--json" in param.opts for param in command.params if param.param_type_name == "option")
    )


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("json-stdout")
    data, ck = shapes_with_checkpoint(root, n=10)
    photos = root / "photos"
    photos.mkdir()
    for image in sorted((data / "images").iterdir())[:2]:
        shutil.copy(image, photos / image.name)
    cvat_voc_export(root / "export", n=4)
    return {"root": root, "data": data, "ck": ck, "photos": photos, "export": root / "export"}


def _stub_engine(monkeypatch: pytest.MonkeyPatch, ws: dict[str, Path]) -> None:
    """Real result objects from the engine calls that would take minutes or need downloads."""
    from refine_cli.data.convert import pipeline
    from refine_cli.engine.bench import catalog
    from refine_cli.engine.infer import export
    from refine_cli.engine.train import trainer
    from refine_cli.models import convert

    row = {"name": TINY_MODEL, "family": "lw-refinenet", "backbone": "mobilenetv2", "variant": "lw", "peer": False,
           "params": 3284565, "gmacs": 0.13, "description": "Light-Weight RefineNet"}  # fmt: skip
    monkeypatch.setattr(catalog, "describe_models", lambda *a, **k: [row])
    monkeypatch.setattr(convert, "convert_official", lambda src, model, out, **k: convert.ConvertReport(
        model=model, num_classes=6, params=3284565, source=str(src), source_sha256="0" * 64, source_keys=287,
        out=str(out)))  # fmt: skip
    monkeypatch.setattr(export, "export_checkpoint", lambda ck, out, **k: export.ExportReport(
        checkpoint=str(ck), out=str(out), format="onnx", model=TINY_MODEL, num_classes=6, opset=20,
        exporter="dynamo", dynamic="batch, height, width", static_size=None, precision="fp32", bn_folded=52,
        bytes=1 << 20, export_seconds=1.0, max_abs_diff={"64x64": 1e-8}, tolerance=1e-3, metadata={}))  # fmt: skip
    monkeypatch.setattr(trainer, "train", lambda cfg, out_dir, **k: trainer.TrainSummary(
        out_dir=str(out_dir), model=cfg.model.name, dataset="shapes", steps=1, epochs=0.1, best_miou=0.5,
        best_step=1, last_val={"miou": 0.5}, train_seconds=1.0, images_per_second=2.0))  # fmt: skip
    real_prepare, reports = pipeline.prepare_dataset, []

    def prepare(converter: str, **kwargs: object) -> object:
        if converter in ("custom",):  # own data: converted for real, and kept for the public datasets
            reports.append(real_prepare(converter, **kwargs))
        return reports[0]

    monkeypatch.setattr(pipeline, "prepare_dataset", prepare)


def _argv(path: str, ws: dict[str, Path], tmp: Path) -> list[str]:
    data, ck = str(ws["data"]), str(ws["ck"])
    own = {
        "refine check": ["check", data],
        "refine models": ["models", "--size", "64"],
        "refine convert": ["convert", ck, "--model", TINY_MODEL, "--out", str(tmp / "c.pt")],
        "refine bench": ["bench", "-m", TINY_MODEL, "--size", "32", "--warmup", "0", "--iters", "2", "--device", "cpu"],
        "refine export": ["export", ck, "--out", str(tmp / "m.onnx")],
        "refine eval": ["eval", "-c", ck, "--data", data, "--device", "cpu"],
        "refine predict": ["predict", str(ws["photos"]), "-c", ck, "--out", str(tmp / "p"), "--device", "cpu"],
        "refine train": ["train", "--data", data, "--out", str(tmp / "run"), "--model", TINY_MODEL, "--iters", "1"],
        "refine prepare shapes": ["prepare", "shapes", "--root", str(tmp), "--n", "4", "--size", "32"],
        "refine prepare custom": ["prepare", "custom", "mine", "--from", str(ws["export"]), "--root", str(tmp)],
    }
    if path in own:
        return own[path]
    (tmp / "archives").mkdir(exist_ok=True)
    return [*path.split()[1:], "--root", str(tmp), "--archives", str(tmp / "archives")]


def test_json_dash_keeps_stdout_pure_for_every_command(
    ws: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = _commands_with_json()
    assert len(commands) >= 18 and "refine check" in commands and "refine prepare voc" in commands, commands
    _stub_engine(monkeypatch, ws)
    for index, path in enumerate(["refine prepare custom", *[c for c in commands if c != "refine prepare custom"]]):
        tmp = tmp_path / str(index)
        tmp.mkdir()
        result = CliRunner().invoke(app, [*_argv(path, ws, tmp), "--json", "-"])
        assert result.exit_code == 0, (path, result.stdout, result.stderr)
        try:
            report = json.loads(result.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"{path} --json -: stdout is not JSON alone:\n{result.stdout}")
        assert report, path
        if path in ("refine check", "refine prepare custom", "refine train"):  # the human report moved to stderr
            assert result.stderr.strip(), path
    check = CliRunner().invoke(app, ["check", str(ws["data"]), "--json", "-"])
    assert "background" in check.stderr and json.loads(check.stdout)["name"] == "shapes"
