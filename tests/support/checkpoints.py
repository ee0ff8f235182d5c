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


def fitted_tiny_checkpoint(path: Path, data: Path, seed: int = 0) -> Path:
    """A tiny LW-RefineNet-MobileNetV2 whose classifier is fitted to the train split of `data` (a trained model).

    The network's features stay random; the classifier's centre tap is the ridge-regression fit of one-hot
    labels on them (closed form: one forward pass, no backward), which segments colour-coded shapes well
    above chance, so accuracy comparisons (fp32 vs int8) compare a model that has learnt something.
    """
    import torch.nn.functional as F

    from refine_cli.data.format.unified import UnifiedDataset
    from refine_cli.data.load.normalize import normalize_image
    from refine_cli.models.checkpoint import load_checkpoint, save_checkpoint

    dataset = UnifiedDataset(data)
    meta = dataset.meta
    save_tiny_checkpoint(path, list(meta.classes), meta.palette, seed=seed)
    model = load_checkpoint(path).build_model("cpu").eval()
    ids = dataset.split_ids("train")
    images = torch.stack([normalize_image(dataset.read_image(i)) for i in ids])
    labels = torch.stack([torch.from_numpy(dataset.read_label(i)).long() for i in ids])
    captured: list[torch.Tensor] = []
    hook = model.classifier.register_forward_pre_hook(lambda _module, inputs: captured.append(inputs[0]))
    with torch.no_grad():
        model(images)
    hook.remove()
    features = captured[0]  # (N, C, h, w)
    small = F.interpolate(labels[:, None].float(), size=features.shape[-2:], mode="nearest")[:, 0].long()
    rows = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]).double()
    targets = small.reshape(-1)
    keep = targets != meta.ignore_index
    rows, onehot = rows[keep], F.one_hot(targets[keep], meta.num_classes).double()
    design = torch.cat([rows, torch.ones(len(rows), 1, dtype=rows.dtype)], 1)
    ridge = 1e-2 * torch.eye(design.shape[1], dtype=rows.dtype)
    solution = torch.linalg.solve(design.T @ design + ridge, design.T @ onehot)  # (C+1, classes)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.weight[:, :, 1, 1] = solution[:-1].T.float()
        model.classifier.bias.copy_(solution[-1].float())
    save_checkpoint(path, model_name=TINY_MODEL, model=model, num_classes=meta.num_classes,
                    classes=list(meta.classes), palette=meta.palette)  # fmt: skip
    return path
