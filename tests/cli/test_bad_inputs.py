"""`refine eval` / `refine predict` on damaged or nonsense input: one line, exit 2, never "internal error"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.convert.shapes import generate_shapes
from refine_cli.data.format.unified import UnifiedDataset

MODEL = "lw-refinenet-mobilenetv2"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from refine_cli.models import create_model
    from refine_cli.models.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("bad")
    data = generate_shapes(root, n=4, size=64)
    meta = UnifiedDataset(data).meta
    checkpoint = root / "tiny.pt"
    torch.manual_seed(0)
    save_checkpoint(checkpoint, model_name=MODEL, model=create_model(MODEL, num_classes=6), num_classes=6,
                    classes=meta.classes, palette=meta.palette)  # fmt: skip
    return {"root": root, "data": data, "ck": checkpoint}


def _error_line(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]  # eval prints its header first
    assert result.exit_code == 2 and errors == lines[-1:] and "Traceback" not in result.output, result.output
    assert "internal error" not in errors[0]
    return errors[0]


def _eval(checkpoint: Path, data: Path) -> list[str]:
    return ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--device", "cpu"]


def _tampered(workspace: dict[str, Path], tmp_path: Path, **changes: object) -> Path:
    payload = torch.load(workspace["ck"], weights_only=True)
    payload.update(changes)
    path = tmp_path / "tampered.pt"
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"model_kwargs": {"num_classes": "abc"}}, "model_kwargs.num_classes must be an integer, not 'abc'"),
        ({"model_kwargs": {"num_classes": 6, "width": 2}}, "model_kwargs has unknown argument(s) width"),
        ({"state_dict": None}, "has no state_dict"),
        ({"model_kwargs": {"num_classes": 0}, "classes": [], "palette": []}, "num_classes is 0: it defines no classes"),
        ({"palette": [[0, 0, 0]] * 5 + [["red", 0, 0]]}, "palette[5] must be [r, g, b]"),
    ],
)
def test_damaged_checkpoint(workspace: dict[str, Path], tmp_path: Path, changes: dict, expected: str) -> None:
    line = _error_line(_eval(_tampered(workspace, tmp_path, **changes), workspace["data"]))
    assert expected in line


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"palette": "nonsense"}, "palette must be a list of [r, g, b] colours"),
        ({"palette": [[0, 0, 0]] * 5 + [[0, 0, 256]]}, "palette[5] must be [r, g, b] with integers 0..255"),
        ({"num_classes": 0, "classes": []}, "num_classes is 0: it defines no classes"),
        ({"ignore_index": "x"}, "ignore_index must be an integer 0..255"),
        ({"classes": ["background", "circle", "circle", "a", "b", "c"]}, "names 'circle' more than once"),
    ],
)
def test_damaged_meta_json(workspace: dict[str, Path], tmp_path: Path, changes: dict, expected: str) -> None:
    data = tmp_path / "shapes"
    shutil.copytree(workspace["data"], data)
    meta = json.loads((data / "meta.json").read_text())
    (data / "meta.json").write_text(json.dumps({**meta, **changes}))
    assert expected in _error_line(_eval(workspace["ck"], data))


def test_non_finite_weights_name_the_checkpoint_not_a_missing_flag(workspace: dict[str, Path], tmp_path: Path) -> None:
    payload = torch.load(workspace["ck"], weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.dim() == 4)
    payload["state_dict"][key] = torch.full_like(payload["state_dict"][key], float("nan"))
    torch.save(payload, tmp_path / "nan.pt")
    line = _error_line(_eval(tmp_path / "nan.pt", workspace["data"]))
    assert "non-finite weights" in line and key in line and "retrain" in line and "--no-fold-bn" not in line
    image = next(iter(sorted((workspace["data"] / "images").iterdir())))
    line = _error_line(["predict", str(image), "--checkpoint", str(tmp_path / "nan.pt"), "--out", str(tmp_path / "p"),
                        "--device", "cpu"])  # fmt: skip
    assert "non-finite weights" in line


def test_truncated_jpeg_fails_eval(workspace: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "shapes"
    shutil.copytree(workspace["data"], data)
    dataset = UnifiedDataset(data)
    victim = dataset.image_path(dataset.split_ids("val")[0])
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    line = _error_line(_eval(workspace["ck"], data) + ["--split", "val"])
    assert victim.name in line and "truncated" in line.lower()


@pytest.mark.parametrize(
    "param", ["bi_w=nan", "bi_w=inf", "pos_xy_std=-inf", "bi_rgb_std=nan", "iterations=100000", "bi_w=1e300"]
)
def test_crf_params_must_be_finite_and_in_range(workspace: dict[str, Path], tmp_path: Path, param: str) -> None:
    image = next(iter(sorted((workspace["data"] / "images").iterdir())))
    line = _error_line(["predict", str(image), "--checkpoint", str(workspace["ck"]), "--out", str(tmp_path / "p"),
                        "--crf", "--crf-param", param, "--device", "cpu"])  # fmt: skip
    assert param.partition("=")[0] in line and "CRF" in line
    assert not (tmp_path / "p").exists()


def test_msc_with_a_word_that_is_no_scale_list(workspace: dict[str, Path], tmp_path: Path) -> None:
    image = next(iter(sorted((workspace["data"] / "images").iterdir())))
    args = ["--checkpoint", str(workspace["ck"]), "--out", str(tmp_path / "p"), "--device", "cpu"]
    line = _error_line(["predict", "--msc", "abc", str(image), *args])
    assert (
        "--msc expects scales like 0.5,1,1.5 or a preset (default, refinenet, refinenet-cityscapes), not 'abc'" in line
    )
    ok = CliRunner().invoke(app, ["predict", "--msc", str(image), *args])  # a path after --msc is an input
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "p" / f"{image.stem}.png").is_file()
