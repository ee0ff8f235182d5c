"""`refine models`, `refine convert` and `refine bench` end to end through the CLI (CPU, tiny sizes)."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.models.checkpoint import load_checkpoint
from tests.models.listings import load_listing

TINY = ["--size", "64", "--warmup", "1", "--iters", "3", "--device", "cpu"]


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def _assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def catalogue() -> list[dict]:
    """`refine models --json -`: every model's row (counted once for the tests of this file)."""
    result = _run("models", "--json", "-")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_models_json_has_exact_counts(catalogue: list[dict]) -> None:
    rows = {row["name"]: row for row in catalogue}
    assert rows["lw-refinenet-50"]["params"] == 27_357_525
    assert rows["lw-refinenet-101"]["params"] == 46_349_653
    assert rows["lw-refinenet-mobilenetv2"]["params"] == 3_284_565
    assert rows["refinenet-101"]["params"] == 118_052_437
    assert rows["refinenet-101"]["gmacs"] == pytest.approx(262.9, rel=0.005)
    assert rows["tv:lraspp_mobilenet_v3_large"]["peer"] is True
    assert not rows["lw-refinenet-50"]["peer"]
    assert "FLOPs = 2 x MACs" in rows["lw-refinenet-50"]["mac_unit"]


def test_models_fit_80_columns_with_one_line_per_model(catalogue: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    """At 80 columns (and in a pipe) a few words per model replace the descriptions: 29 lines, not 93."""
    from refine_cli.engine.bench import catalog

    monkeypatch.setattr(catalog, "describe_models", lambda *args, **kwargs: catalogue)
    narrow = CliRunner().invoke(app, ["models"], env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.stdout.splitlines()
    assert len(lines) <= 30 and max(len(line) for line in lines) <= 80 and "…" not in narrow.stdout, narrow.stdout
    wide = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"}).stdout.splitlines()
    for row in catalogue:
        line = next(line for line in lines if line.split()[:1] == [row["name"]])
        assert f"{row['params']:,}" in line and f"{row['gmacs']:.2f}" in line, line
        assert line.rstrip().endswith(row["summary"].removeprefix("peer: ")), line  # whole, on the model's line
        assert next(line for line in wide if line.split()[:1] == [row["name"]]).rstrip().endswith(row["description"])
    assert "Full descriptions: a wider terminal or --json." in narrow.stdout


def test_bench_json_fields_and_consistency() -> None:
    result = _run("bench", "-m", "lw-refinenet-mobilenetv2", "-m", "tv:lraspp_mobilenet_v3_large", *TINY, "--json", "-")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["model"] for row in rows] == ["lw-refinenet-mobilenetv2", "tv:lraspp_mobilenet_v3_large"]
    for row in rows:
        latency = row["latency_ms"]
        numbers = [*latency.values(), row["fps"], row["gmacs"]]
        assert all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in numbers), row
        assert latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
        assert row["fps"] == pytest.approx(1000.0 / latency["mean"], rel=1e-3)
        assert row["device"] == "cpu" and row["precision"] == "fp32" and row["batch"] == 1
        assert row["size"] == [64, 64] and row["iters"] == 3 and row["bn_folded"] > 0
        assert row["peak_memory_mb"] is None or row["peak_memory_mb"] >= 0
        assert row["env"]["torch"] == torch.__version__ and row["env"]["torch_threads"] >= 1
        assert any("not a CUDA benchmark" in note for note in row["notes"])
        assert row["malloc_tuned"] is (platform.libc_ver()[0] == "glibc")  # the CLI tunes glibc before a model runs
    assert rows[0]["params"] == 3_284_565
    assert rows[0]["gmacs"] == pytest.approx(8.584 / 64, rel=0.01)  # MACs scale with the pixel count


def test_bench_table_and_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A --checkpoint row is named by its file: beside a --model row of the same architecture, the two differ."""
    from refine_cli.engine.bench import plot
    from refine_cli.models import create_model
    from refine_cli.models.checkpoint import save_checkpoint

    path = tmp_path / "best.pt"
    name = "lw-refinenet-mobilenetv2"
    save_checkpoint(path, model_name=name, model=create_model(name, num_classes=4), num_classes=4)
    figures = []
    monkeypatch.setattr(plot, "save_figure", lambda figure, target: figures.append(figure) or Path(target))
    args = ["bench", "--checkpoint", str(path), "-m", name, *TINY, "--batch", "2", "--precision", "bf16"]
    result = _run(*args, "--channels-last", "--plot", str(tmp_path / "speed.png"))
    assert result.exit_code == 0, result.output
    assert "bf16" in result.stdout and "not a CUDA benchmark" in result.stdout
    rows = [line.split()[:2] for line in result.stdout.splitlines() if line.strip().startswith(name)]
    assert len(rows) == 2 and rows[0] == [name, "(best.pt)"] and rows[1][1][0].isdigit(), result.stdout
    labels = sorted(text.get_text() for text in figures[0].axes[0].texts)
    assert labels == sorted([f"{name} (best.pt)", name])


def _bench_row(model: str, runtime: str, mean: float):  # noqa: ANN202 - a BenchResult
    from refine_cli.engine.bench.benchmark import BenchResult

    latency = {"mean": mean, "std": 0.5, "min": mean - 1, "p50": mean, "p90": mean + 1, "p99": mean + 2.34}
    env = {"cpu": "a CPU", "torch": "2.x", "torchvision": "0.x", "refine": "0.1.0"}
    return BenchResult(
        model=model, label=model, runtime=runtime, size=[64, 64], device="cpu", batch=1, precision="fp32",
        channels_last=True, compile=False, compile_mode=None, params=11_025_477, gmacs=163.58, latency_ms=latency,
        fps=1000 / mean,
        peak_memory_mb=1234.0, peak_reserved_mb=None, compile_time_s=None, env=env, threads=1, onnxruntime=None,
        checkpoint=None, num_classes=21, mac_unit="MACs", timed="forward", timer="time.perf_counter", warmup=1,
        iters=3, bn_folded=52, malloc_tuned=True, notes=[],
    )  # fmt: skip


@pytest.mark.parametrize("width", [80, 110, 140])
def test_bench_table_never_cuts_a_number(width: int, monkeypatch) -> None:
    """Two runtimes and the longest peer name in an 80-column terminal: columns go, numbers stay whole."""
    from rich.console import Console

    import refine_cli.cli.bench as bench_cli

    console = Console(width=width, record=True, highlight=False)
    monkeypatch.setattr(bench_cli, "out", console)
    rows = [_bench_row(m, r, 1234.56) for m in ("tv:deeplabv3_mobilenet_v3_large", "lw-refinenet-50")
            for r in ("torch", "onnxruntime")]  # fmt: skip
    bench_cli._print_report(rows)
    text = console.export_text()
    assert "…" not in text, text
    for number in ("1234.56", "1236.90", "0.8", "1234"):  # mean, p99, FPS, peak MiB
        assert number in text, text
    assert text.count("onnxruntime") == 2 and "lw-refinenet-50" in text


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--iters", "1"], "--iters 1"),
        (["--warmup", "-1"], "--warmup -1"),
        (["--size", "512x"], "bad --size"),
        (["--size", "0"], "too small"),
        (["--size", "abc"], "bad --size"),
        (["--precision", "fp16", "--device", "cpu"], "fp16"),
        (["--precision", "fp8"], "unknown precision"),
        (["-m", "lw-refinenet-51"], "unknown model"),
        (["-m", "tv:unet"], "unknown torchvision peer"),
        (["--checkpoint", "missing.pt"], "does not exist"),
    ],
)
def test_bench_errors_are_one_line(args: list[str], fragment: str) -> None:
    base = ["bench", "-m", "lw-refinenet-mobilenetv2", "--size", "64", "--iters", "3", "--device", "cpu"]
    _assert_one_line_error(_run(*base, *args), fragment)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_bench_cuda_without_cuda() -> None:
    _assert_one_line_error(_run("bench", "-m", "lw-refinenet-mobilenetv2", "--device", "cuda"), "CUDA is not available")


def _fake_official(name: str) -> dict[str, torch.Tensor]:
    shapes, _ = load_listing(name)
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            continue  # the released LW files have none
        state[key] = torch.rand(shape, generator=generator) + (0.5 if key.endswith("running_var") else 0.0)
    return state


def test_convert_official_mobilenet(tmp_path: Path) -> None:
    state = _fake_official("lw-refinenet-mobilenetv2")
    src = tmp_path / "mbv2_voc.pth.tar"
    torch.save({"segmenter": {f"module.{k}": v for k, v in state.items()}, "epoch": 10}, src)
    out = tmp_path / "converted.pt"
    result = _run("convert", str(src), "--model", "lw-refinenet-mobilenetv2", "--out", str(out), "--num-classes", "21")
    assert result.exit_code == 0, result.output
    assert "3,284,565" in result.stdout and "lw-refinenet-mobilenetv2" in result.stdout
    checkpoint = load_checkpoint(out)
    assert checkpoint.num_classes == 21 and checkpoint.extra["source_keys"] == len(state)
    model = checkpoint.build_model()
    ours = model.state_dict()
    assert torch.equal(ours["classifier.weight"], state["segm.weight"])
    # every official tensor arrived somewhere (values are random, so equal sums mean the same tensors)
    ours_total = sum(v.double().sum().item() for k, v in ours.items() if "num_batches" not in k)
    assert ours_total == pytest.approx(sum(v.double().sum().item() for v in state.values()), rel=1e-9)
    again = _run("convert", str(src), "--model", "lw-refinenet-mobilenetv2", "--out", str(out))
    _assert_one_line_error(again, "already exists")
    reject = _run("bench", "--checkpoint", str(src), *TINY)
    _assert_one_line_error(reject, "official lw-refinenet-mobilenetv2", "refine convert")


def test_convert_errors(tmp_path: Path) -> None:
    state = _fake_official("lw-refinenet-mobilenetv2")
    src = tmp_path / "official.pth"
    torch.save(state, src)
    out = str(tmp_path / "out.pt")
    _assert_one_line_error(
        _run("convert", str(src), "--model", "lw-refinenet-mobilenetv2", "--out", out, "--num-classes", "40"),
        "--num-classes 40",
    )
    _assert_one_line_error(_run("convert", str(src), "--model", "lw-refinenet-50", "--out", out), "--model")
    del state["layer2.0.output.0.1.bias"]
    torch.save(state, src)
    _assert_one_line_error(
        _run("convert", str(src), "--model", "lw-refinenet-mobilenetv2", "--out", out), "layer2.0.output.0.1.bias"
    )
    assert not Path(out).exists()


def test_convert_library_lw50_plain_state_dict(tmp_path: Path) -> None:
    """A plain LW-50 state_dict with num_batches_tracked keys (the other official layout) converts strictly."""
    from refine_cli.models.convert import convert_official

    shapes, expected_params = load_listing("lw-refinenet-50")
    state = {
        key: torch.full(shape, 0.5, dtype=torch.long if not shape else torch.float32) for key, shape in shapes.items()
    }
    torch.save(state, tmp_path / "lw50.pth")
    summary = convert_official(tmp_path / "lw50.pth", "lw-refinenet-50", tmp_path / "lw50_refine.pt")
    assert summary.params == expected_params and summary.num_classes == 21
    assert summary.source_keys == len(shapes)
    assert load_checkpoint(tmp_path / "lw50_refine.pt").model == "lw-refinenet-50"


def test_convert_library_refuses_out_that_is_the_source(tmp_path: Path) -> None:
    """The one output guard also protects library callers, hard links included (a plain path compare missed them)."""
    import os

    from refine_cli.errors import RefineError
    from refine_cli.models.convert import convert_official

    src = tmp_path / "official.pth"
    torch.save({"w": torch.zeros(1)}, src)
    before = src.read_bytes()
    os.link(src, tmp_path / "alias.pth")
    with pytest.raises(RefineError, match="would overwrite the source checkpoint"):
        convert_official(src, "lw-refinenet-mobilenetv2", tmp_path / "alias.pth", overwrite=True)
    assert src.read_bytes() == before
