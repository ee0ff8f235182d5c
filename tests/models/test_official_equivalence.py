"""Our models compute exactly what the official architectures compute, once weights are imported.

The official side is the independent transcription in official_reference.py; both get the same
random weights (BatchNorm statistics included) through `import_official_state_dict`.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from refine_cli.models import create_model
from refine_cli.models.official import export_official_state_dict, import_official_state_dict
from tests.models.official_reference import OfficialMobileNetLW, OfficialResNetRefine

CASES = {
    "lw-refinenet-50": lambda classes: OfficialResNetRefine(50, classes, full=False),
    "lw-refinenet-mobilenetv2": lambda classes: OfficialMobileNetLW(classes),
    "refinenet-50": lambda classes: OfficialResNetRefine(50, classes, full=True),
}


def randomize_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BatchNorm parameters and statistics, so a mis-mapped BN would show."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                for tensor, low, high in (
                    (module.weight, 0.5, 1.5),
                    (module.bias, -0.2, 0.2),
                    (module.running_mean, -0.2, 0.2),
                    (module.running_var, 0.5, 1.5),
                ):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return model


def assert_same_logits(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape
    scale = theirs.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("name", sorted(CASES))
def test_imported_weights_give_official_outputs(name: str) -> None:
    torch.manual_seed(0)
    official = randomize_batchnorm(CASES[name](5), seed=1).eval()
    with torch.device("meta"):  # no random init: every tensor comes from the import (strict, assign)
        ours = create_model(name, num_classes=5).eval()
    ours.load_state_dict(import_official_state_dict(name, official.state_dict()), strict=True, assign=True)
    with torch.no_grad():
        for size in ((48, 64), (37, 29)):  # an odd size exercises the exact-size upsampling
            x = torch.randn(1, 3, *size)
            assert_same_logits(ours(x), official(x))


@pytest.mark.parametrize("name", ["lw-refinenet-mobilenetv2", "refinenet-50"])
def test_exported_weights_load_into_official_code(name: str) -> None:
    torch.manual_seed(2)
    ours = randomize_batchnorm(create_model(name, num_classes=3), seed=3).eval()
    with torch.device("meta"):
        official = CASES[name](3).eval()
    official.load_state_dict(export_official_state_dict(name, ours.state_dict()), strict=True, assign=True)
    with torch.no_grad():
        x = torch.randn(1, 3, 48, 56)
        assert_same_logits(ours(x), official(x))
