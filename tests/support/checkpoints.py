"""A tiny refine checkpoint that behaves like a trained one at inference time (for export/eval/predict tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TINY_MODEL = "lw-refinenet-mobilenetv2"


def save_tiny_checkpoint(
    path: Path,
    classes: list[str],
    palette: list[list[int]],
    *,
    extra: dict[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """Write an LW-RefineNet-MobileNetV2 checkpoint with random weights and random BatchNorm statistics.

    Fresh BatchNorms (mean 0, variance 1) fold into identities and the label maps come out nearly
    constant; random statistics make folding do real work and give label maps with several classes,
    so equality tests between runtimes (ONNX, fp16, torch.compile) compare something.
    """
    from refine_cli.models import create_model
    from refine_cli.models.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    model = create_model(TINY_MODEL, num_classes=len(classes))
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    save_checkpoint(path, model_name=TINY_MODEL, model=model, num_classes=len(classes), classes=list(classes),
                    palette=palette, extra=extra)  # fmt: skip
    return path


def shapes_with_checkpoint(root: Path, n: int, extra: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """`refine prepare shapes` with `n` 64 px images under `root`, and a tiny checkpoint for its 6 classes.

    Returns (dataset folder, checkpoint); 20% of the images are the val split.
    """
    from typer.testing import CliRunner

    from refine_cli.cli.app import app
    from refine_cli.data.format.unified import UnifiedDataset

    result = CliRunner().invoke(app, ["prepare", "shapes", "--root", str(root), "--n", str(n), "--size", "64"])
    assert result.exit_code == 0, result.output
    data = root / "shapes"
    meta = UnifiedDataset(data).meta
    return data, save_tiny_checkpoint(root / "tiny.pt", meta.classes, meta.palette, extra=extra)
