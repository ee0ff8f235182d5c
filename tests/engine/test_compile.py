"""`compile_for_inference`: torch.compile with inductor freezing (weights as constants) keeps the outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from refine_cli.engine.infer.model_prep import compile_for_inference


@pytest.mark.usefixtures("restore_inductor_freezing")
def test_frozen_compile_matches_eager() -> None:
    import torch._inductor.config as inductor_config

    inductor_config.freezing = False  # restored after the test
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    x = torch.randn(1, 3, 16, 20)
    compiled = compile_for_inference(model)
    assert inductor_config.freezing is True
    with torch.inference_mode():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
