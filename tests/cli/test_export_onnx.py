"""`refine export --format onnx`, and eval/predict through the exported file (ONNX Runtime backend)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refine_cli.data.format.unified import UnifiedDataset
from tests.support.checkpoints import save_tiny_checkpoint
from tests.support.cli import error_line, run_cli
from tests.support.workspaces import ShapesWorkspace

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ID_MAP = [7, 8, 11, 12, 13, 17]


PREDICTED = 6  # images `refine predict` labels in the runtime comparisons


@pytest.fixture(scope="module")
def exported(shapes_workspace: ShapesWorkspace, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The shared shapes data, its tiny checkpoint with a label-id map, and the ONNX export of it, made once."""
    root = tmp_path_factory.mktemp("onnx")
    meta = shapes_workspace.dataset.meta
    facts = {"name": "shapes", "ignore_index": 255, "extra": {"train_id_to_label_id": ID_MAP}}
    checkpoint = save_tiny_checkpoint(root / "tiny.pt", meta.classes, meta.palette, extra={"dataset": facts})
    onnx_path = root / "tiny.onnx"
    report = _json_of(run_cli("export", str(checkpoint), "--format", "onnx", "--out", str(onnx_path), "--json", "-"))
    images = root / "images"
    images.mkdir()
    for path in sorted(shapes_workspace.images.iterdir())[:PREDICTED]:
        shutil.copy(path, images)
    data = shapes_workspace.data
    return {"root": root, "data": data, "images": images, "ck": checkpoint, "onnx": onnx_path, "report": report,
            "meta": meta}  # fmt: skip


def test_export_report_and_metadata_round_trip(exported: dict) -> None:
    from refine_cli.engine.infer.onnx_backend import open_session

    report = exported["report"]
    assert set(report["max_abs_diff"]) == {"64x64", "97x131"}
    assert max(report["max_abs_diff"].values()) <= report["tolerance"] == 1e-3
    assert report["bn_folded"] > 0 and report["dynamic"] == "batch, height, width" and report["opset"] >= 17
    card, session = open_session(exported["onnx"])
    meta = exported["meta"]
    assert card.model == "lw-refinenet-mobilenetv2" and card.num_classes == 6
    assert card.classes == list(meta.classes) and card.palette == [list(c) for c in meta.palette]
    assert card.label_id_map == ID_MAP and card.ignore_index == 255 and card.output_stride == 4
    assert card.mean == pytest.approx([0.485, 0.456, 0.406]) and card.std == pytest.approx([0.229, 0.224, 0.225])
    assert [i.name for i in session.get_inputs()] == ["images"]


def test_export_runs_any_size_like_pytorch(exported: dict) -> None:
    """Odd sizes and batch 2 give ceil(H/4) x ceil(W/4) logits equal to the (unfolded) PyTorch model's."""
    from refine_cli.engine.infer.export import max_abs_difference
    from refine_cli.engine.infer.onnx_backend import open_session
    from refine_cli.models.checkpoint import load_checkpoint

    reference = load_checkpoint(exported["ck"]).build_model().eval()
    _, session = open_session(exported["onnx"])
    differences = max_abs_difference(reference, session, [(33, 45), (130, 71), (64, 200)], seed=3)
    assert max(differences.values()) < 1e-3
    (logits,) = session.run(None, {"images": np.random.default_rng(0).normal(size=(2, 3, 37, 51)).astype(np.float32)})
    assert logits.shape == (2, 6, 10, 13)


def _predict(images: Path, checkpoint: Path, out: Path, *extra: str) -> dict[str, np.ndarray]:
    """`refine predict` on a file or folder -> {png name: label map}."""
    result = run_cli("predict", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu",
                   *extra)  # fmt: skip
    assert result.exit_code == 0, result.output
    return {path.name: np.array(Image.open(path)) for path in sorted(out.glob("*.png"))}


def test_predict_through_onnx_equals_the_checkpoint(exported: dict, tmp_path: Path) -> None:
    plain = {}
    for index, options in enumerate(([], ["--msc", "0.75,1.25", "--flip", "--tile", "48x48", "--batch", "2"])):
        torch_labels = _predict(exported["images"], exported["ck"], tmp_path / f"pt{index}", *options)
        onnx_labels = _predict(exported["images"], exported["onnx"], tmp_path / f"onnx{index}", *options)
        assert len(torch_labels) == PREDICTED and torch_labels.keys() == onnx_labels.keys()
        for name, labels in torch_labels.items():
            np.testing.assert_array_equal(onnx_labels[name], labels, err_msg=f"{name} with {options}")
        plain = plain or onnx_labels
    # the label-id map travels inside the file
    ids = _predict(exported["images"], exported["onnx"], tmp_path / "ids", "--label-ids")
    for name, labels in plain.items():
        np.testing.assert_array_equal(ids[name], np.array(ID_MAP, np.uint8)[labels])


def test_eval_through_onnx_equals_the_checkpoint(exported: dict) -> None:
    reports = []
    for checkpoint in (exported["ck"], exported["onnx"]):
        result = run_cli("eval", "--checkpoint", str(checkpoint), "--data", str(exported["data"]), "--split", "val",
                       "--msc", "--flip", "--device", "cpu", "--json", "-")  # fmt: skip
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout[result.stdout.index("{") :]))
    torch_report, onnx_report = reports
    assert (torch_report["runtime"], onnx_report["runtime"]) == ("torch", "onnxruntime")
    assert onnx_report["per_class"] == torch_report["per_class"] and onnx_report["miou"] == torch_report["miou"]


def test_onnx_files_keep_their_export_precision(exported: dict, tmp_path: Path) -> None:
    """An fp32 file runs in fp32 only: --precision bf16 (or nonsense) is refused up front, nothing written."""
    base = ["predict", str(exported["images"]), "-c", str(exported["onnx"]), "--device", "cpu", "--json", "-"]
    assert "was exported in fp32" in error_line(run_cli(*base, "--out", str(tmp_path / "a"), "--precision", "bf16"))
    assert "unknown precision 'fp8'" in error_line(run_cli(*base, "--out", str(tmp_path / "a"), "--precision", "fp8"))
    assert not (tmp_path / "a").exists()
    same = run_cli(*base, "--out", str(tmp_path / "b"), "--precision", "fp32")
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout)["precision"] == "fp32" and len(list((tmp_path / "b").glob("*.png"))) == PREDICTED


def test_damaged_or_foreign_onnx_is_refused_with_one_line(exported: dict, tmp_path: Path) -> None:
    import onnx

    data = exported["onnx"].read_bytes()
    truncated, garbage, foreign = tmp_path / "cut.onnx", tmp_path / "junk.onnx", tmp_path / "foreign.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    garbage.write_bytes(b"this is not a model at all" * 10)
    proto = onnx.load(str(exported["onnx"]))
    for entry in proto.metadata_props:  # a colour channel of 300: checked like a checkpoint's palette
        if entry.key.endswith("palette"):
            entry.value = json.dumps([[300, 0, 0]] + json.loads(entry.value)[1:])
    bad_palette = tmp_path / "palette.onnx"
    onnx.save(proto, str(bad_palette))
    del proto.metadata_props[:]
    onnx.save(proto, str(foreign))
    image = next(exported["images"].iterdir())
    for path, reason in ((truncated, "not a readable ONNX model"), (garbage, "not a readable ONNX model"),
                         (foreign, "ONNX file without refine metadata"),
                         (bad_palette, "palette[0] must be [r, g, b] with integers 0..255")):  # fmt: skip
        for args in (["predict", str(image), "--out", str(tmp_path / "o")], ["eval", "--data", str(exported["data"])]):
            result = run_cli(*args, "--checkpoint", str(path), "--device", "cpu")
            assert result.exit_code == 2, result.output
            assert reason in result.output and "Traceback" not in result.output
            assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "o").exists()


def test_export_above_tolerance_leaves_nothing(exported: dict, tmp_path: Path) -> None:
    """fp16 at a static size cannot meet a zero tolerance: exit 2, no file, no temporary left behind."""
    out = tmp_path / "half.onnx"
    args = ["export", str(exported["ck"]), "--out", str(out), "--static", "64x64", "--fp16", "--tolerance", "0"]
    result = run_cli(*args)
    assert result.exit_code == 2 and "differs from PyTorch by" in result.output, result.output
    assert list(tmp_path.iterdir()) == []
    bad = run_cli("export", str(exported["ck"]), "--out", str(out), "--format", "tflite")
    assert bad.exit_code == 2 and "unknown export format" in bad.output


def test_evaluate_on_sample_sees_every_image_with_its_prediction(exported: dict, tmp_path: Path) -> None:
    from refine_cli.engine.eval.evaluator import evaluate
    from refine_cli.engine.infer.loop import load_model

    dataset = UnifiedDataset(exported["data"])
    seen: list[tuple[str, tuple, np.ndarray, np.ndarray]] = []
    model = load_model(exported["onnx"], "cpu")

    def on_sample(sample_id: str, image: np.ndarray, label: np.ndarray, pred: np.ndarray) -> None:
        seen.append((sample_id, image.shape, label, pred))

    evaluate(model.backend, dataset, "val", progress=False, save_pred_dir=tmp_path, on_sample=on_sample)
    assert [s[0] for s in seen] == dataset.split_ids("val")
    for sample_id, shape, label, pred in seen:
        assert shape == (*label.shape, 3) and pred.dtype == np.uint8
        np.testing.assert_array_equal(label, dataset.read_label(sample_id))
        np.testing.assert_array_equal(pred, np.array(Image.open(tmp_path / f"{sample_id}.png")))


@pytest.mark.slow  # bench exports its own ONNX file: ~16 s on two cores
def test_bench_times_both_runtimes_in_one_table() -> None:
    args = ["bench", "-m", "lw-refinenet-mobilenetv2", "--runtime", "torch", "--runtime", "onnxruntime",
            "--size", "64", "--warmup", "1", "--iters", "2", "--device", "cpu", "--num-classes", "3"]  # fmt: skip
    result = run_cli(*args, "--json", "-")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout[result.stdout.index("[") :])
    assert [row["runtime"] for row in rows] == ["torch", "onnxruntime"]
    assert rows[0]["onnxruntime"] is None and rows[1]["onnxruntime"]["providers"][0] == "CPUExecutionProvider"
    assert all(row["latency_ms"]["mean"] > 0 and row["bn_folded"] > 0 for row in rows)
    refused = run_cli(*args, "--precision", "bf16")
    assert refused.exit_code == 2 and "--runtime onnxruntime times fp32" in refused.output
    unknown = run_cli("bench", "-m", "lw-refinenet-mobilenetv2", "--runtime", "tensorrt", "--size", "64")
    assert unknown.exit_code == 2 and "unknown runtime 'tensorrt'" in unknown.output


def test_bench_times_an_exported_file_under_onnx_runtime(exported: dict) -> None:
    """`bench --checkpoint x.onnx` called a valid file "corrupt or of another kind"; now it is timed as it is."""
    args = ["bench", "--checkpoint", str(exported["onnx"]), "-m", "lw-refinenet-mobilenetv2", "--size", "64",
            "--warmup", "1", "--iters", "2", "--device", "cpu", "--num-classes", "6"]  # fmt: skip
    result = run_cli(*args, "--json", "-")
    assert result.exit_code == 0, result.output
    onnx_row, torch_row = json.loads(result.stdout)
    assert onnx_row["label"] == "lw-refinenet-mobilenetv2 (tiny.onnx)" and onnx_row["runtime"] == "onnxruntime"
    assert onnx_row["onnxruntime"]["providers"][0] == "CPUExecutionProvider" and onnx_row["onnxruntime"]["opset"] >= 17
    assert onnx_row["checkpoint"] == str(exported["onnx"]) and onnx_row["num_classes"] == 6
    assert onnx_row["params"] == torch_row["params"] and onnx_row["gmacs"] == torch_row["gmacs"]
    assert onnx_row["bn_folded"] == torch_row["bn_folded"] > 0 and onnx_row["latency_ms"]["mean"] > 0
    assert torch_row["label"] == "lw-refinenet-mobilenetv2" and torch_row["runtime"] == "torch"
    table = run_cli(*args)
    assert "(tiny.onnx)" in table.stdout and "onnxruntime" in table.stdout  # the label wraps at its space
    refused = run_cli(*args, "--precision", "bf16")
    assert "runs at the precision it was exported with" in error_line(refused)
    torch_only = run_cli(*args, "--runtime", "torch")  # not timed by ONNX Runtime under a PyTorch label
    assert torch_only.exit_code == 2 and "is an exported ONNX graph; PyTorch cannot run it" in error_line(torch_only)


# --- `--static HxW` and `--fp16`: the files they write, and eval/predict through them ---

STATIC = (48, 64)  # not square: a height/width swap anywhere would show


def _json_of(result) -> dict:  # noqa: ANN001 - click Result
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{") :])


def _graph_io(path: Path) -> tuple[list, list, list[int]]:
    """(input dims, output dims, initializer data types) of an ONNX file; a symbolic dim is its name."""
    import onnx

    graph = onnx.load(str(path)).graph

    def dims(value) -> list:  # noqa: ANN001 - onnx ValueInfoProto
        return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]

    assert [value.type.tensor_type.elem_type for value in (*graph.input, *graph.output)] == [onnx.TensorProto.FLOAT] * 2
    return dims(graph.input[0]), dims(graph.output[0]), [tensor.data_type for tensor in graph.initializer]


@pytest.fixture(scope="module")
def static_export(exported: dict) -> dict:
    """The tiny checkpoint exported with --static 48x64, and a 6-class dataset of 48x64 images."""
    from tests.support.tiny_seg import make_tiny_dataset

    root = exported["root"]
    data = make_tiny_dataset(root, "wide", num_classes=6, train=1, val=3, size=STATIC)
    out = root / "static.onnx"
    report = _json_of(run_cli("export", str(exported["ck"]), "--out", str(out), "--static", "48x64", "--json", "-"))
    return {"onnx": out, "report": report, "data": data}


def test_static_export_fixes_height_and_width(static_export: dict) -> None:
    from refine_cli.engine.infer.onnx_backend import open_session

    report = static_export["report"]
    assert report["static_size"] == [48, 64] and report["dynamic"] == "batch"
    assert list(report["max_abs_diff"]) == ["48x64"] and report["max_abs_diff"]["48x64"] <= 1e-3
    inputs, outputs, _ = _graph_io(static_export["onnx"])
    assert inputs[1:] == [3, 48, 64] and outputs[1:] == [6, 12, 16]
    assert isinstance(inputs[0], str) and inputs[0] == outputs[0]  # batch stays dynamic, as the report says
    card, session = open_session(static_export["onnx"])
    assert card.static_size == [48, 64] and card.precision == "fp32"
    batch = np.zeros((2, 3, *STATIC), np.float32)
    assert session.run(None, {"images": batch})[0].shape == (2, 6, 12, 16)


def test_predict_and_eval_through_a_static_export_equal_the_checkpoint(
    exported: dict, static_export: dict, tmp_path: Path
) -> None:
    images, onnx_path = static_export["data"] / "images", static_export["onnx"]
    torch_labels = _predict(images, exported["ck"], tmp_path / "pt", "--batch", "2")
    onnx_labels = _predict(images, onnx_path, tmp_path / "onnx", "--batch", "2")
    assert len(torch_labels) == 4 and onnx_labels.keys() == torch_labels.keys()
    for name, labels in torch_labels.items():
        assert labels.shape == STATIC and len(np.unique(labels)) >= 2
        np.testing.assert_array_equal(onnx_labels[name], labels, err_msg=name)
    reports = [
        _json_of(
            run_cli(
                *[
                    "eval",
                    "--checkpoint",
                    str(checkpoint),
                    "--data",
                    str(static_export["data"]),
                    "--device",
                    "cpu",
                    "--json",
                    "-",
                ]
            )
        )  # fmt: skip
        for checkpoint in (exported["ck"], onnx_path)
    ]
    assert [report["runtime"] for report in reports] == ["torch", "onnxruntime"]
    assert reports[1]["per_class"] == reports[0]["per_class"] and reports[1]["miou"] == reports[0]["miou"]


def test_a_static_export_refuses_other_sizes_unless_tiled(exported: dict, static_export: dict, tmp_path: Path) -> None:
    onnx_path, square = static_export["onnx"], sorted(exported["images"].iterdir())[0]  # 64x64
    line = error_line(run_cli("predict", str(square), "--checkpoint", str(onnx_path), "--out",
                                   str(tmp_path / "refused"), "--device", "cpu"))  # fmt: skip
    assert f"{onnx_path} was exported for 48x64 inputs only; this view is 64x64" in line
    assert "use --tile 48x64 without --msc" in line and not (tmp_path / "refused").exists()
    msc = ["eval", "--checkpoint", str(onnx_path), "--data", str(static_export["data"]), "--msc", "--device", "cpu"]
    assert "exported for 48x64 inputs only" in error_line(run_cli(*msc))
    # with --tile 48x64 every window has the exported size: same labels as the checkpoint, tiled alike
    tiled_onnx = _predict(square, onnx_path, tmp_path / "onnx", "--tile", "48x64")
    tiled_torch = _predict(square, exported["ck"], tmp_path / "pt", "--tile", "48x64")
    assert len(tiled_onnx) == 1 and tiled_onnx.keys() == tiled_torch.keys()
    for name, labels in tiled_torch.items():
        assert labels.shape == (64, 64)
        np.testing.assert_array_equal(tiled_onnx[name], labels)
    small = tmp_path / "small.png"  # smaller than 48x64: a tile cannot help, and the hint must not suggest one
    Image.fromarray(np.full((32, 40, 3), 90, np.uint8)).save(small)
    args = ["predict", str(small), "--checkpoint", str(onnx_path), "--out", str(tmp_path / "o2"), "--tile", "48x64"]
    line = error_line(run_cli(*args, "--device", "cpu"))
    assert "this view is 32x40" in line and "cannot be tiled: export without --static" in line
    bench = ["bench", "--checkpoint", str(onnx_path), "--iters", "2", "--warmup", "0", "--device", "cpu"]
    line = error_line(run_cli(*bench, "--size", "64"))
    assert "was exported for 48x64 inputs only, not --size 64x64" in line and "use --size 48x64" in line
    timed = run_cli(*bench, "--size", "48x64", "--json", "-")
    assert timed.exit_code == 0 and json.loads(timed.stdout)[0]["size"] == [48, 64], timed.output


@pytest.mark.slow  # an fp16 export verified at two sizes: ~20 s on two cores
def test_fp16_export_stores_half_weights_and_keeps_the_labels(exported: dict, tmp_path: Path) -> None:
    """Weights really fp16 (half the bytes), fp32 in and out, verified by ORT; labels agree with fp32 on >= 99%."""
    import onnx

    from refine_cli.engine.infer.onnx_backend import open_session

    half = tmp_path / "half.onnx"
    report = _json_of(run_cli("export", str(exported["ck"]), "--out", str(half), "--fp16", "--json", "-"))
    assert report["precision"] == "fp16" and report["tolerance"] == 5e-2
    assert set(report["max_abs_diff"]) == {"64x64", "97x131"}
    # within the fp16 tolerance, and not the ~1e-7 of an fp32 file: the weights were really rounded
    assert all(1e-6 < difference <= 5e-2 for difference in report["max_abs_diff"].values()), report
    inputs, _, types = _graph_io(half)
    assert inputs[1] == 3 and all(isinstance(dim, str) for dim in inputs[2:])  # any HxW
    assert types.count(onnx.TensorProto.FLOAT16) >= 100 and onnx.TensorProto.FLOAT not in types
    assert half.stat().st_size < 0.55 * exported["onnx"].stat().st_size
    card, _ = open_session(half)
    assert card.precision == "fp16"
    images = exported["images"]
    fp32 = _predict(images, exported["ck"], tmp_path / "fp32")
    fp16 = _predict(images, half, tmp_path / "fp16")
    assert len(fp32) == PREDICTED and fp16.keys() == fp32.keys()
    counts = np.bincount(np.concatenate([labels.ravel() for labels in fp32.values()]), minlength=6)
    assert np.sort(counts)[-2] >= 0.05 * counts.sum(), counts  # two classes or more: boundaries to get wrong
    agreement = [float((fp16[name] == labels).mean()) for name, labels in fp32.items()]
    assert min(agreement) >= 0.99, agreement
