"""`refine eval` / `refine predict` on damaged or nonsense input: one line, exit 2, never "internal error"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from refine_cli.data.format.unified import UnifiedDataset
from tests.support.cli import error_line, run_cli
from tests.support.workspaces import ShapesWorkspace


def _eval(checkpoint: Path, data: Path) -> list[str]:
    return ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--device", "cpu"]


def _refused(args: list[str]) -> str:
    return error_line(run_cli(*args))


def _tampered(ws: ShapesWorkspace, tmp_path: Path, **changes: object) -> Path:
    payload = torch.load(ws.checkpoint, weights_only=True)
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
def test_damaged_checkpoint(shapes_workspace: ShapesWorkspace, tmp_path: Path, changes: dict, expected: str) -> None:
    line = _refused(_eval(_tampered(shapes_workspace, tmp_path, **changes), shapes_workspace.data))
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
def test_damaged_meta_json(shapes_workspace: ShapesWorkspace, tmp_path: Path, changes: dict, expected: str) -> None:
    data = tmp_path / "shapes"
    shutil.copytree(shapes_workspace.data, data)
    meta = json.loads((data / "meta.json").read_text())
    (data / "meta.json").write_text(json.dumps({**meta, **changes}))
    assert expected in _refused(_eval(shapes_workspace.checkpoint, data))


def test_non_finite_weights_name_the_checkpoint_not_a_missing_flag(
    shapes_workspace: ShapesWorkspace, tmp_path: Path
) -> None:
    payload = torch.load(shapes_workspace.checkpoint, weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.dim() == 4)
    payload["state_dict"][key] = torch.full_like(payload["state_dict"][key], float("nan"))
    torch.save(payload, tmp_path / "nan.pt")
    line = _refused(_eval(tmp_path / "nan.pt", shapes_workspace.data))
    assert "non-finite weights" in line and key in line and "retrain" in line and "--no-fold-bn" not in line
    image = sorted(shapes_workspace.images.iterdir())[0]
    out = tmp_path / "p"
    line = _refused(
        ["predict", str(image), "--checkpoint", str(tmp_path / "nan.pt"), "--out", str(out), "--device", "cpu"]
    )
    assert "non-finite weights" in line and not out.exists()


def test_truncated_jpeg_fails_eval(shapes_workspace: ShapesWorkspace, tmp_path: Path) -> None:
    data = tmp_path / "shapes"
    shutil.copytree(shapes_workspace.data, data)
    dataset = UnifiedDataset(data)
    victim = dataset.image_path(dataset.split_ids("val")[0])
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    line = _refused(_eval(shapes_workspace.checkpoint, data) + ["--split", "val"])
    assert victim.name in line and "truncated" in line.lower()


@pytest.mark.parametrize(
    "param", ["bi_w=nan", "bi_w=inf", "pos_xy_std=-inf", "bi_rgb_std=nan", "iterations=100000", "bi_w=1e300"]
)
def test_crf_params_must_be_finite_and_in_range(shapes_workspace: ShapesWorkspace, tmp_path: Path, param: str) -> None:
    image = sorted(shapes_workspace.images.iterdir())[0]
    line = _refused(["predict", str(image), "--checkpoint", str(shapes_workspace.checkpoint), "--out",
                     str(tmp_path / "p"), "--crf", "--crf-param", param, "--device", "cpu"])  # fmt: skip
    assert param.partition("=")[0] in line and "CRF" in line
    assert not (tmp_path / "p").exists()


def test_msc_with_a_word_that_is_no_scale_list(shapes_workspace: ShapesWorkspace, tmp_path: Path) -> None:
    image = sorted(shapes_workspace.images.iterdir())[0]
    args = ["--checkpoint", str(shapes_workspace.checkpoint), "--out", str(tmp_path / "p"), "--device", "cpu"]
    line = _refused(["predict", "--msc", "abc", str(image), *args])
    assert (
        "--msc expects scales like 0.5,1,1.5 or a preset (default, refinenet, refinenet-cityscapes), not 'abc'" in line
    )
    assert not (tmp_path / "p").exists()
    ok = run_cli("predict", "--msc", str(image), *args)  # a path after --msc is an input
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "p" / f"{image.stem}.png").is_file()
