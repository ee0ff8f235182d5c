"""`refine predict --compile` and `refine eval --compile` end to end: torch.compile (inductor) changes no result.

A cold inductor compile of the tiny model takes ~18 s on the 2-core CPU, a second one in the same
process ~4-5 s (inductor's on-disk graph cache); the images are 64 px so the compiled kernels stay small.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from refine_cli.cli.app import app
from tests.support.workspaces import ShapesWorkspace

pytestmark = pytest.mark.usefixtures("one_torch_thread", "restore_inductor_freezing")  # 2 shared cores


@pytest.fixture(scope="module")
def workspace(shapes_workspace: ShapesWorkspace, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shared shapes (64 px, 2 val images) and tiny checkpoint, and two of its images in a folder."""
    images = tmp_path_factory.mktemp("compile") / "images"
    images.mkdir()
    for path in sorted(shapes_workspace.images.iterdir())[:2]:
        shutil.copy(path, images)
    return {"data": shapes_workspace.data, "images": images, "ck": shapes_workspace.checkpoint}


def _compiled_graphs() -> int:
    """How many graphs dynamo has compiled in this process (a `--compile` that compiles nothing adds none)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _invoke(args: list[str]):  # noqa: ANN202 - click Result
    result = CliRunner().invoke(app, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.slow  # an inductor compile: ~13 s on two cores
def test_predict_compile_gives_the_same_label_maps(workspace: dict[str, Path], tmp_path: Path) -> None:
    labels = []
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        before = _compiled_graphs()
        out = tmp_path / name
        _invoke(["predict", str(workspace["images"]), "--checkpoint", str(workspace["ck"]), "--out", str(out), *extra])
        assert (_compiled_graphs() > before) == (name == "compiled")
        labels.append({path.name: np.array(Image.open(path)) for path in sorted(out.glob("*.png"))})
    eager, compiled = labels
    assert len(eager) == 2 and compiled.keys() == eager.keys()
    for name, label in eager.items():
        assert label.shape == (64, 64) and len(np.unique(label)) >= 2  # a map with boundaries, not a constant
        np.testing.assert_array_equal(compiled[name], label, err_msg=name)


@pytest.mark.slow  # a second inductor compile: ~10 s on two cores
def test_eval_compile_gives_the_same_metrics(workspace: dict[str, Path]) -> None:
    reports = []
    for extra in ([], ["--compile"]):
        before = _compiled_graphs()
        args = ["eval", "--checkpoint", str(workspace["ck"]), "--data", str(workspace["data"]), "--json", "-"]
        result = _invoke([*args, *extra])
        assert (_compiled_graphs() > before) == bool(extra)
        reports.append(json.loads(result.stdout[result.stdout.index("{") :]))
    eager, compiled = ({key: value for key, value in report.items() if key != "seconds"} for report in reports)
    assert eager["num_images"] == 2 and 0 < eager["miou"] < 1
    assert compiled == eager  # every metric and per-class score, to the last bit
