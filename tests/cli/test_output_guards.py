"""No output option writes onto or into an input: every reproduced case is refused up front, inputs untouched."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refine_cli.errors import RefineError
from refine_cli.guards import refuse_output_over_inputs
from tests.support.cli import error_line, run_cli
from tests.support.digests import tree_digest
from tests.support.workspaces import ShapesWorkspace


@pytest.fixture
def ws(shapes_workspace: ShapesWorkspace) -> dict[str, Path]:
    """The shared shapes dataset, the folder that holds it, and its checkpoint: every case here is refused."""
    return {"root": shapes_workspace.data.parent, "data": shapes_workspace.data, "ck": shapes_workspace.checkpoint}


def _refused(args: list[str], *protected: Path) -> str:
    """Run the command; it must fail with one line and exit 2 and leave the protected paths byte-identical."""
    before = [tree_digest(path) for path in protected]
    line = error_line(run_cli(*args), alone=True)
    assert [tree_digest(path) for path in protected] == before
    return line


@pytest.mark.parametrize("form", ["two tokens", "equals"])
def test_eval_json_onto_the_checkpoint_is_refused(ws: dict[str, Path], form: str) -> None:
    json_args = ["--json", str(ws["ck"])] if form == "two tokens" else [f"--json={ws['ck']}"]
    line = _refused(["eval", "-c", str(ws["ck"]), "--data", str(ws["data"]), *json_args], ws["ck"])
    assert "would overwrite the --checkpoint" in line


def test_eval_save_pred_into_the_dataset_is_refused(ws: dict[str, Path]) -> None:
    args = ["eval", "-c", str(ws["ck"]), "--data", str(ws["data"]), "--save-pred", str(ws["data"] / "labels")]
    line = _refused(args, ws["data"])
    assert "--save-pred" in line and "is inside the --data" in line
    # a folder that holds the dataset is refused too (containment both ways)
    line = _refused(
        ["eval", "-c", str(ws["ck"]), "--data", str(ws["data"]), "--save-pred", str(ws["root"])], ws["data"]
    )
    assert "--save-pred" in line and "contains the" in line


def test_eval_pred_folder_is_not_an_output(ws: dict[str, Path], tmp_path: Path) -> None:
    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / "x.png").write_bytes(b"not read")
    line = _refused(["eval", "--pred", str(preds), "--data", str(ws["data"]), "--json", str(preds / "r.json")], preds)
    assert "is inside the --pred" in line


@pytest.mark.parametrize("form", ["two tokens", "equals"])
def test_check_json_onto_meta_is_refused(ws: dict[str, Path], tmp_path: Path, form: str) -> None:
    meta = ws["data"] / "meta.json"
    json_args = ["--json", str(meta)] if form == "two tokens" else [f"--json={meta}"]
    assert "is inside the dataset" in _refused(["check", str(ws["data"]), *json_args], ws["data"])
    # the same file through a symlinked folder is the same file
    link = tmp_path / "alias"
    link.symlink_to(ws["data"], target_is_directory=True)
    assert "is inside the dataset" in _refused(
        ["check", str(ws["data"]), "--json", str(link / "meta.json")], ws["data"]
    )


def test_json_equals_form_checks_the_folder_up_front(ws: dict[str, Path], tmp_path: Path) -> None:
    """`--json=PATH` behaves like `--json PATH`: a missing folder is refused, not created after the work."""
    line = _refused(["check", str(ws["data"]), f"--json={tmp_path / 'no' / 'r.json'}"])
    assert "does not exist" in line and not (tmp_path / "no").exists()


def test_predict_never_writes_into_an_input_folder(ws: dict[str, Path], tmp_path: Path) -> None:
    """`predict photos/ --out photos` wrote the PNGs among the photos, and the next run took them as inputs."""
    photos = tmp_path / "photos"
    photos.mkdir()
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(image).save(photos / "a.jpg")
    predict = ["predict", "-c", str(ws["ck"]), "--device", "cpu"]
    for out in (photos, photos / "preds", photos / "deep" / "er"):  # the folder itself, or anywhere below it
        line = _refused([*predict, str(photos), "--out", str(out)], photos)
        assert f"--out {out} " in line and f"the input folder {photos}" in line, line
        assert not (photos / "a.png").exists() and not (photos / "preds").exists()
    # b.png is an input image and would be replaced by the prediction for b.png
    Image.fromarray(image).save(photos / "b.png")
    line = _refused([*predict, str(photos / "b.png"), "--out", str(photos)], photos)
    assert "would overwrite the input image" in line and "b.png" in line
    # images given one by one: a prediction beside its image replaces nothing and is allowed
    ok = run_cli(*predict, photos / "a.jpg", "--out", photos)
    assert ok.exit_code == 0, ok.output
    assert (photos / "a.jpg").is_file() and (photos / "a.png").is_file()
    (photos / "a.png").unlink()
    # --json onto an input image
    line = _refused([*predict, str(photos / "a.jpg"), "--out", str(tmp_path / "o"), "--json", str(photos / "a.jpg")],
                    photos)  # fmt: skip
    assert "would overwrite the input image" in line and not (tmp_path / "o").exists()


def test_convert_bench_train_refuse_outputs_over_inputs(ws: dict[str, Path], tmp_path: Path) -> None:
    ck = ws["ck"]
    line = _refused(["convert", str(ck), "--model", "lw-refinenet-mobilenetv2", "--out", str(ck), "--force"], ck)
    assert "--out" in line and "would overwrite the source checkpoint" in line
    line = _refused(["bench", "--checkpoint", str(ck), "--json", str(ck), "--device", "cpu"], ck)
    assert "would overwrite the --checkpoint" in line
    line = _refused(["export", str(ck), "--format", "onnx", "--out", str(ck)], ck)  # was: ONNX over the .pt
    assert "--out" in line and "would overwrite the checkpoint" in line
    line = _refused(["export", str(ck), "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--json", str(ck)], ck)
    assert "--json" in line and not (tmp_path / "m.onnx").exists()
    fast = ["--model", "lw-refinenet-mobilenetv2", "--crop", "32", "--workers", "0", "--device", "cpu", "--iters", "1"]
    line = _refused(["train", "--data", str(ws["data"]), "--out", str(ws["data"] / "run"), *fast], ws["data"])
    assert "--out" in line and "is inside the dataset" in line
    line = _refused(["train", "--data", str(ws["data"]), "--out", str(tmp_path / "r"), "--init", str(ck),
                     "--json", str(ck), *fast], ck)  # fmt: skip
    assert "would overwrite the --init" in line and not (tmp_path / "r").exists()  # refused before the folder
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("model:\n  name: lw-refinenet-mobilenetv2\n")
    line = _refused(["train", "--recipe", str(recipe), "--data", str(ws["data"]), "--out", str(tmp_path / "r"),
                     "--json", str(recipe), *fast], recipe)  # fmt: skip
    assert "would overwrite the --recipe" in line
    (tmp_path / "r").mkdir()
    line = _refused(["train", "--data", str(ws["data"]), "--out", str(tmp_path / "r"), *fast,
                     "--json", str(tmp_path / "r" / "last.pt")])  # fmt: skip
    assert "would overwrite the run's file" in line
    curves = tmp_path / "r" / "curves.png"  # was: the JSON replaced the picture, exit 0
    line = _refused(["train", "--data", str(ws["data"]), "--out", str(tmp_path / "r"), *fast, "--json", str(curves)])
    assert "would overwrite the run's file" in line and "curves.png" in line


def test_prepare_refuses_json_on_an_archive_and_in_the_dataset(ws: dict[str, Path], tmp_path: Path) -> None:
    from refine_cli.data.acquire.manifest import load_manifest

    archives = tmp_path / "archives"
    archives.mkdir()
    tar = archives / load_manifest("voc").source("trainval").file
    tar.write_bytes(b"stand-in for the real archive")
    line = _refused(["prepare", "voc", "--archives", str(archives), "--root", str(tmp_path / "data"),
                     "--json", str(tar)], tar)  # fmt: skip
    assert "would overwrite the archive" in line and not (tmp_path / "data" / "voc").exists()
    line = _refused(["prepare", "voc", "--archives", str(tmp_path / "data" / "voc"), "--root", str(tmp_path / "data")])
    assert "dataset folder" in line and "contains the archive" in line
    shapes = tmp_path / "data" / "shapes"
    shapes.mkdir(parents=True)
    line = _refused(["prepare", "shapes", "--root", str(tmp_path / "data"), "--json", str(shapes / "meta.json")])
    assert "is inside the dataset folder" in line and not any(shapes.iterdir())


def test_helper_rules(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "labels").mkdir(parents=True)
    (data / "labels" / "a.png").write_bytes(b"x")
    os.link(data / "labels" / "a.png", tmp_path / "hard.png")
    refuse_output_over_inputs({"--json": "-", "--out": None, "--x": ""}, {"in": data})  # stdout/unset: nothing
    refuse_output_over_inputs({"--out": tmp_path / "elsewhere"}, {"in": data})  # beside: fine
    cases = {
        tmp_path / "data": "would overwrite",
        tmp_path / "data" / "labels": "is inside",
        tmp_path: "contains",
        tmp_path / "hard.png": "would overwrite",  # a hard link to an input is the input
    }
    for out, words in cases.items():
        inputs = {"in": [data / "labels" / "a.png"]} if out.name == "hard.png" else {"in": data}
        with pytest.raises(RefineError, match=words):
            refuse_output_over_inputs({"--out": out}, inputs)
    with pytest.raises(RefineError, match="are the same path"):
        refuse_output_over_inputs({"--out": tmp_path / "o.pt", "--json": tmp_path / "o.pt"}, {})
