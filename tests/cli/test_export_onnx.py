"""`refine export --format onnx`, and eval/predict through the exported file (ONNX Runtime backend)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.unified import UnifiedDataset

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ID_MAP = [7, 8, 11, 12, 13, 17]


def _run(args: list[str]):  # noqa: ANN202 - click Result
    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny trained-looking checkpoint (random BN statistics) and its ONNX export, made once."""
    from refine_cli.models import create_model
    from refine_cli.models.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("onnx")
    assert _run(["prepare", "shapes", "--root", str(root), "--n", "6", "--size", "64"]).exit_code == 0
    data = root / "shapes"
    meta = UnifiedDataset(data).meta
    torch.manual_seed(0)
    model = create_model("lw-refinenet-mobilenetv2", num_classes=6)
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():  # non-trivial BN statistics, so folding is really exercised
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    checkpoint = root / "tiny.pt"
    facts = {"name": "shapes", "ignore_index": 255, "extra": {"train_id_to_label_id": ID_MAP}}
    save_checkpoint(checkpoint, model_name="lw-refinenet-mobilenetv2", model=model, num_classes=6,
                    classes=meta.classes, palette=meta.palette, extra={"dataset": facts})  # fmt: skip
    onnx_path = root / "tiny.onnx"
    result = _run(["export", str(checkpoint), "--format", "onnx", "--out", str(onnx_path), "--json", "-"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    return {"root": root, "data": data, "ck": checkpoint, "onnx": onnx_path, "report": report, "meta": meta}


def test_export_report_and_metadata_round_trip(exported: dict) -> None:
    from refine_cli.engine.onnx_model import open_session

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
    from refine_cli.engine.export import max_abs_difference
    from refine_cli.engine.onnx_model import open_session
    from refine_cli.models.checkpoint import load_checkpoint

    reference = load_checkpoint(exported["ck"]).build_model().eval()
    _, session = open_session(exported["onnx"])
    differences = max_abs_difference(reference, session, [(33, 45), (130, 71), (64, 200)], seed=3)
    assert max(differences.values()) < 1e-3
    (logits,) = session.run(None, {"images": np.random.default_rng(0).normal(size=(2, 3, 37, 51)).astype(np.float32)})
    assert logits.shape == (2, 6, 10, 13)


def _predict(exported: dict, checkpoint: Path, out: Path, *extra: str) -> dict[str, np.ndarray]:
    images = exported["data"] / "images"
    result = _run(["predict", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu",
                   *extra])  # fmt: skip
    assert result.exit_code == 0, result.output
    return {path.name: np.array(Image.open(path)) for path in sorted(out.glob("*.png"))}


def test_predict_through_onnx_equals_the_checkpoint(exported: dict, tmp_path: Path) -> None:
    plain = {}
    for index, options in enumerate(([], ["--msc", "0.75,1.25", "--flip", "--tile", "48x48", "--batch", "2"])):
        torch_labels = _predict(exported, exported["ck"], tmp_path / f"pt{index}", *options)
        onnx_labels = _predict(exported, exported["onnx"], tmp_path / f"onnx{index}", *options)
        assert len(torch_labels) == 6 and torch_labels.keys() == onnx_labels.keys()
        for name, labels in torch_labels.items():
            np.testing.assert_array_equal(onnx_labels[name], labels, err_msg=f"{name} with {options}")
        plain = plain or onnx_labels
    # the label-id map travels inside the file
    ids = _predict(exported, exported["onnx"], tmp_path / "ids", "--label-ids")
    for name, labels in plain.items():
        np.testing.assert_array_equal(ids[name], np.array(ID_MAP, np.uint8)[labels])


def test_eval_through_onnx_equals_the_checkpoint(exported: dict) -> None:
    reports = []
    for checkpoint in (exported["ck"], exported["onnx"]):
        result = _run(["eval", "--checkpoint", str(checkpoint), "--data", str(exported["data"]), "--split", "val",
                       "--msc", "--flip", "--device", "cpu", "--json", "-"])  # fmt: skip
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout[result.stdout.index("{") :]))
    torch_report, onnx_report = reports
    assert (torch_report["runtime"], onnx_report["runtime"]) == ("torch", "onnxruntime")
    assert onnx_report["per_class"] == torch_report["per_class"] and onnx_report["miou"] == torch_report["miou"]


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
    image = next((exported["data"] / "images").iterdir())
    for path, reason in ((truncated, "not a readable ONNX model"), (garbage, "not a readable ONNX model"),
                         (foreign, "ONNX file without refine metadata"),
                         (bad_palette, "palette[0] must be [r, g, b] with integers 0..255")):  # fmt: skip
        for args in (["predict", str(image), "--out", str(tmp_path / "o")], ["eval", "--data", str(exported["data"])]):
            result = _run([*args, "--checkpoint", str(path), "--device", "cpu"])
            assert result.exit_code == 2, result.output
            assert reason in result.output and "Traceback" not in result.output
            assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "o").exists()


def test_export_above_tolerance_leaves_nothing(exported: dict, tmp_path: Path) -> None:
    """fp16 at a static size cannot meet a zero tolerance: exit 2, no file, no temporary left behind."""
    out = tmp_path / "half.onnx"
    args = ["export", str(exported["ck"]), "--out", str(out), "--static", "64x64", "--fp16", "--tolerance", "0"]
    result = _run(args)
    assert result.exit_code == 2 and "differs from PyTorch by" in result.output, result.output
    assert list(tmp_path.iterdir()) == []
    bad = _run(["export", str(exported["ck"]), "--out", str(out), "--format", "tflite"])
    assert bad.exit_code == 2 and "unknown export format" in bad.output


def test_evaluate_on_sample_sees_every_image_with_its_prediction(exported: dict, tmp_path: Path) -> None:
    from refine_cli.engine.evaluator import evaluate
    from refine_cli.engine.runner import load_model

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


def test_bench_times_both_runtimes_in_one_table() -> None:
    args = ["bench", "-m", "lw-refinenet-mobilenetv2", "--runtime", "torch", "--runtime", "onnxruntime",
            "--size", "64", "--warmup", "1", "--iters", "2", "--device", "cpu", "--num-classes", "3"]  # fmt: skip
    result = _run([*args, "--json", "-"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout[result.stdout.index("[") :])
    assert [row["runtime"] for row in rows] == ["torch", "onnxruntime"]
    assert rows[0]["onnxruntime"] is None and rows[1]["onnxruntime"]["providers"][0] == "CPUExecutionProvider"
    assert all(row["latency_ms"]["mean"] > 0 and row["bn_folded"] > 0 for row in rows)
    refused = _run([*args, "--precision", "bf16"])
    assert refused.exit_code == 2 and "--runtime onnxruntime times fp32" in refused.output
    unknown = _run(["bench", "-m", "lw-refinenet-mobilenetv2", "--runtime", "tensorrt", "--size", "64"])
    assert unknown.exit_code == 2 and "unknown runtime 'tensorrt'" in unknown.output
