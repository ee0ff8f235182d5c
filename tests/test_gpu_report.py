"""tools/gpu_report.py on a fake gpu_check.sh run, and tools/gpu_check.sh's arguments, dry run and no-GPU exit."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "gpu_check.sh"
_spec = importlib.util.spec_from_file_location("gpu_report", ROOT / "tools" / "gpu_report.py")
gpu_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_report)


def _row(model: str, precision: str, batch: int, mean: float, mode: str | None = None) -> dict:
    return {
        "model": model,
        "size": [512, 512],
        "precision": precision,
        "batch": batch,
        "compile": mode is not None,
        "compile_mode": mode,
        "compile_time_s": 41.5 if mode else None,
        "latency_ms": {"mean": mean, "p50": mean, "p99": mean * 1.1},
        "fps": batch * 1000.0 / mean,
        "peak_memory_mb": 900.0,
        "params": 27_357_525,
        "env": {"gpu": "NVIDIA H200", "torch": "2.9.0", "cuda": "12.8", "cudnn": 91000, "driver": "570.1"},
    }


def _fake_run(out: Path) -> None:
    (out / "bench").mkdir(parents=True)
    eager = [_row("lw-refinenet-50", "fp32", 1, 4.0), _row("lw-refinenet-50", "bf16", 1, 2.5)]
    eager.append(_row("tv:fcn_resnet50", "bf16", 1, 8.0))
    (out / "bench" / "eager-b1.json").write_text(json.dumps(eager))
    compiled = [_row("lw-refinenet-50", "bf16", 1, 1.25, "reduce-overhead"), _row("lw-refinenet-50", "bf16", 16, 20.0)]
    (out / "bench" / "compile.json").write_text(json.dumps(compiled))
    train = {"model": "lw-refinenet-50", "steps": 60, "train_seconds": 12.5, "images_per_second": 76.8}
    (out / "train.json").write_text(json.dumps(train))
    (out / "eval.json").write_text(json.dumps({"miou": 0.8123, "num_images": 40, "seconds": 3.2}))
    (out / "eval_bf16.json").write_text(json.dumps({"miou": 0.8119, "num_images": 40, "seconds": 2.1}))
    steps = "bench-eager-b1\t0\t40\t\ntrain-amp\t1\t30\tCUDA error\nddp-2gpu\t0\t0\tskipped: 1 GPU(s), needs 2\n"
    (out / "steps.tsv").write_text(steps)


def test_report_tables_and_json(tmp_path: Path) -> None:
    _fake_run(tmp_path)
    assert gpu_report.main([str(tmp_path)]) == 0
    markdown = (tmp_path / "gpu_report.md").read_text()
    report = json.loads((tmp_path / "gpu_report.json").read_text())
    assert len(report["bench"]) == 5 and report["train"]["images_per_second"] == 76.8 and report["predict"] is None
    assert "NVIDIA H200; torch 2.9.0, CUDA 12.8" in markdown
    assert "| model | fp32 eager | bf16 eager | bf16 reduce-overhead |" in markdown
    assert "| lw-refinenet-50 | 4.00 (250) | 2.50 (400) | 1.25 (800) |" in markdown
    assert "| tv:fcn_resnet50 | - | 8.00 (125) | - |" in markdown
    assert "### Batch 16" in markdown and "| lw-refinenet-50 | 20.00 (800) |" in markdown
    assert "lw-refinenet-50 bf16 reduce-overhead 42 s" in markdown  # compile time, apart from the latency
    assert "60 steps in 12.5 s, 76.8 images/s" in markdown and "mIoU 0.8123, 40 images" in markdown
    assert "## Eval (bf16 autocast)\n\nmIoU 0.8119, 40 images in 2.1 s" in markdown
    assert "| train-amp | FAILED (exit 1) | 30 | CUDA error |" in markdown
    assert "| ddp-2gpu | skipped | 0 |" in markdown


def test_report_rejects_a_file_that_is_not_bench_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "x.json").write_text(json.dumps({"model": "m"}))
    assert gpu_report.main([str(tmp_path)]) == 2
    assert "refine bench --json" in capsys.readouterr().err
    assert not (tmp_path / "gpu_report.md").exists()


def _script(*args: str, python: str = "false") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": python, "REFINE": "refine"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)


def test_dry_run_prints_the_plan_without_a_gpu(tmp_path: Path) -> None:
    done = _script("--dry-run", "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    benches = [line for line in lines if line.startswith("bench-")]
    assert len(benches) == 9 and all("--device cuda" in line and "--size 512" in line for line in benches)
    eager = next(line for line in benches if line.startswith("bench-eager-bf16-b16"))
    assert eager.count(" -m ") == 11 and "-m refinenet-152" in eager and "-m tv:fcn_resnet50" in eager
    assert any("--compile-mode reduce-overhead" in line for line in benches)
    assert any(line.startswith("train-amp") and "--amp bf16" in line for line in lines)
    assert any(line.startswith("ddp-2gpu") and "--nproc-per-node 2" in line for line in lines)
    assert not (tmp_path / "run").exists()


def test_no_gpu_fails_fast_and_bad_arguments_exit_2(tmp_path: Path) -> None:
    done = _script("--out", str(tmp_path / "run"))  # PYTHON=false: torch.cuda.is_available() is "False"
    assert done.returncode == 2 and "no CUDA GPU" in done.stderr and "--dry-run" in done.stderr
    assert not (tmp_path / "run").exists()
    for args in (["--bogus"], ["--budget", "soon"], ["--out"]):
        bad = _script(*args)
        assert bad.returncode == 2 and bad.stderr.startswith("error: "), args


@pytest.mark.slow  # ten refine processes, each importing torch: ~70 s on two cores
def test_cpu_smoke_runs_every_step_of_the_gpu_plan(tmp_path: Path) -> None:
    """The GPU day gets one short lease: every command line, output file and report section is proven here.

    The torch.compile steps are left out (--no-compile): they are `refine bench --compile`, covered by the
    bench and compile tests, and would add a minute of compilation on two cores.
    """
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PYTHON": sys.executable, "REFINE": str(venv_bin / "refine"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "smoke"
    done = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-smoke", "--no-compile", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    steps = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()]
    names = [step[0] for step in steps]
    assert all(step[1] == "0" for step in steps), steps
    assert names == ["bench-eager-fp32-b1", "bench-eager-bf16-b1", "bench-eager-bf16-b4", "prepare-shapes",
                     "train-amp", "eval", "eval-bf16", "predict", "ddp-2gpu", "bench-eager-fp32-b4"]  # fmt: skip
    report = json.loads((out / "gpu_report.json").read_text())
    assert {row["model"] for row in report["bench"]} == {"lw-refinenet-mobilenetv2", "tv:lraspp_mobilenet_v3_large"}
    assert report["train"]["steps"] == 2 and report["ddp"]["steps"] == 2
    assert report["eval"]["precision"] == "fp32" and report["eval_bf16"]["precision"] == "bf16"
    assert report["predict"]["processed"] == len(list((out / "predictions").glob("*.png"))) > 0
    markdown = (out / "gpu_report.md").read_text()
    assert markdown.startswith("# GPU check plan, CPU smoke run") and "## DDP (2 processes, gloo)" in markdown
