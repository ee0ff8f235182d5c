"""`--precision` for eval and predict: the forward really runs in that precision, the rest stays fp32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.engine.infer.loop import TorchBackend
from refine_cli.engine.infer.model_prep import precision_context, slow_precision_warning, tf32_flags
from refine_cli.models import create_model
from tests.support.cli import error_line
from tests.support.workspaces import ShapesWorkspace


@pytest.fixture
def workspace(shapes_workspace: ShapesWorkspace) -> dict[str, Path]:
    return {"data": shapes_workspace.data, "ck": shapes_workspace.checkpoint}


def _first_conv_dtypes(backend: TorchBackend, images: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """(dtype the first convolution produced, dtype the backend returned)."""
    seen: list[torch.dtype] = []
    conv = next(m for m in backend.model.modules() if isinstance(m, torch.nn.Conv2d))
    handle = conv.register_forward_hook(lambda _m, _i, output: seen.append(output.dtype))
    try:
        logits = backend(images)
    finally:
        handle.remove()
    return seen[0], logits.dtype


def test_backend_runs_the_forward_in_the_chosen_precision_and_returns_fp32() -> None:
    torch.manual_seed(0)
    model = create_model("lw-refinenet-mobilenetv2", 4).eval()
    images = torch.randn(1, 3, 64, 64)
    assert _first_conv_dtypes(TorchBackend(model), images) == (torch.float32, torch.float32)
    assert _first_conv_dtypes(TorchBackend(model, precision="bf16"), images) == (torch.bfloat16, torch.float32)


def test_backend_refuses_what_the_device_cannot_do() -> None:
    from refine_cli.errors import RefineError

    model = create_model("lw-refinenet-mobilenetv2", 4)
    for precision, words in (("fp16", "not supported on the CPU"), ("tf32", "CUDA"), ("int4", "unknown precision")):
        with pytest.raises(RefineError, match=words):
            TorchBackend(model, precision=precision)


def test_fp32_is_strict_on_cuda_and_tf32_is_asked_for() -> None:
    """The TF32 switches are process-wide: set for the forward only, then restored (no GPU needed)."""
    before = tf32_flags()
    cuda = torch.device("cuda")
    with precision_context("tf32", cuda):
        assert set(map(str, tf32_flags().values())) <= {"tf32", "True"}
    with precision_context("fp32", cuda):
        assert set(map(str, tf32_flags().values())) <= {"ieee", "False"}
    assert tf32_flags() == before


def test_bf16_warning_only_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert slow_precision_warning("fp32", cpu) is None
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert "no bf16 instructions" in (slow_precision_warning("bf16", cpu) or "")
    assert slow_precision_warning("bf16", torch.device("cuda")) is None


def _predict(workspace: dict[str, Path], out: Path, *extra: str) -> dict:
    images = workspace["data"] / "images"
    args = ["predict", str(images), "-c", str(workspace["ck"]), "--out", str(out), "--device", "cpu", "--probs"]
    result = CliRunner().invoke(app, [*args, *extra, "--json", str(out.parent / f"{out.name}.json")])
    assert result.exit_code == 0, result.output
    return json.loads((out.parent / f"{out.name}.json").read_text())


def test_predict_and_eval_in_bf16(workspace: dict[str, Path], tmp_path: Path) -> None:
    """bf16 changes the probabilities a little (so the forward really ran in bf16), not the result."""
    fp32 = _predict(workspace, tmp_path / "fp32")
    bf16 = _predict(workspace, tmp_path / "bf16", "--precision", "BF16")
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    stems = sorted(p.name for p in (tmp_path / "fp32").glob("*_probs.npz"))
    assert stems and stems == sorted(p.name for p in (tmp_path / "bf16").glob("*_probs.npz"))
    differences = []
    for name in stems:
        a = np.load(tmp_path / "fp32" / name)["probs"].astype(np.float32)
        b = np.load(tmp_path / "bf16" / name)["probs"].astype(np.float32)
        differences.append(float(np.abs(a - b).max()))
    assert 0 < max(differences) < 0.1
    data = str(workspace["data"])
    args = ["eval", "-c", str(workspace["ck"]), "--data", data, "--device", "cpu", "--json", "-"]
    strict = CliRunner().invoke(app, args)
    mixed = CliRunner().invoke(app, [*args, "--precision", "bf16"])
    assert strict.exit_code == 0 and mixed.exit_code == 0, mixed.output
    strict_report, mixed_report = json.loads(strict.stdout), json.loads(mixed.stdout)
    assert (strict_report["precision"], mixed_report["precision"]) == ("fp32", "bf16")
    assert mixed_report["pixel_acc"] == pytest.approx(strict_report["pixel_acc"], abs=0.05)


def test_precision_errors_are_one_line(workspace: dict[str, Path], tmp_path: Path) -> None:
    data = str(workspace["data"])
    for precision, words in (("fp16", "fp16 is not supported on the CPU"), ("fp8", "unknown precision 'fp8'")):
        result = CliRunner().invoke(app, ["eval", "-c", str(workspace["ck"]), "--data", data, "--device", "cpu",
                                          "--precision", precision, "--json", str(tmp_path / "r.json")])  # fmt: skip
        assert words in error_line(result) and not (tmp_path / "r.json").exists()


def test_eval_and_bench_warn_when_bf16_would_be_emulated(
    workspace: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    evaluated = CliRunner().invoke(
        app, ["eval", "-c", str(workspace["ck"]), "--data", str(workspace["data"]), "--precision", "bf16"]
    )
    assert evaluated.exit_code == 0 and "no bf16 instructions" in evaluated.output
    benched = CliRunner().invoke(
        app, ["bench", "-m", "lw-refinenet-mobilenetv2", "--device", "cpu", "--size", "64", "--iters", "2",
              "--warmup", "0", "--precision", "bf16"]
    )  # fmt: skip
    assert benched.exit_code == 0 and "no bf16 instructions" in benched.output
    assert benched.output.index("no bf16 instructions") < benched.output.index("benchmarking")  # not after the wait
    plain = CliRunner().invoke(
        app, ["eval", "-c", str(workspace["ck"]), "--data", str(workspace["data"]), "--precision", "fp32"]
    )
    assert plain.exit_code == 0 and "bf16 instructions" not in plain.output


def test_eval_of_saved_predictions_refuses_precision(workspace: dict[str, Path], tmp_path: Path) -> None:
    """Scoring --pred files runs no model: a --precision there would be ignored, so it is refused."""
    saved = tmp_path / "pred"
    data = str(workspace["data"])
    made = CliRunner().invoke(app, ["eval", "-c", str(workspace["ck"]), "--data", data, "--save-pred", str(saved)])
    assert made.exit_code == 0, made.output
    scored = CliRunner().invoke(app, ["eval", "--pred", str(saved), "--data", data])
    assert scored.exit_code == 0, scored.output
    for flag in (["--precision", "bf16"], ["--compile"], ["--device", "cpu"], ["--batch", "4"], ["--crf-workers", "2"]):
        line = error_line(CliRunner().invoke(app, ["eval", "--pred", str(saved), "--data", data, *flag]))
        assert f"{flag[0]} needs --checkpoint, not --pred" in line and f"(drop {flag[0]})" in line
    both = CliRunner().invoke(app, ["eval", "--pred", str(saved), "--data", data, "--flip", "--batch", "2"])
    assert "--flip, --batch need --checkpoint" in error_line(both)


def test_every_eval_report_says_which_precision_ran(workspace: dict[str, Path], tmp_path: Path) -> None:
    """The JSON, the HTML --report and a library/validation `evaluate` of a bare module all carry it."""
    from refine_cli.engine.eval.evaluator import evaluate

    data = str(workspace["data"])
    args = ["eval", "-c", str(workspace["ck"]), "--data", data, "--precision", "bf16", "--json", "-"]
    result = CliRunner().invoke(app, [*args, "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert (json.loads(result.stdout)["precision"], json.loads(result.stdout)["runtime"]) == ("bf16", "torch")
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<td>precision</td><td>bf16</td>" in page and "<td>runtime</td><td>torch</td>" in page
    model = create_model("lw-refinenet-mobilenetv2", 6)
    report = evaluate(model, UnifiedDataset(workspace["data"]), "val", progress=False).to_json()
    assert (report["precision"], report["runtime"]) == ("fp32", "torch")
