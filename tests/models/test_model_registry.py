"""Registry, model construction and pinned parameter counts (built on the meta device: no memory, fast)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from refine_cli.errors import RefineError
from refine_cli.models import create_model, list_models, model_info

# Measured on the official code with 21 classes (docs/models.md): exact targets.
PINNED = {
    "lw-refinenet-50": 27_357_525,
    "lw-refinenet-101": 46_349_653,
    "lw-refinenet-152": 61_993_301,
    "lw-refinenet-mobilenetv2": 3_284_565,
    "refinenet-50": 99_060_309,
    "refinenet-101": 118_052_437,
    "refinenet-152": 133_696_085,
}


def meta_model(name: str, num_classes: int = 21):
    with torch.device("meta"):
        return create_model(name, num_classes=num_classes)


def count(params) -> int:
    return sum(p.numel() for p in params)


def test_list_models_is_sorted_and_complete() -> None:
    names = list_models()
    assert names == sorted(names) and len(names) == len(set(names)) == 16
    for depth in (50, 101, 152):
        for suffix in ("", "-cascade2", "-single", "-2scale"):
            assert f"refinenet-{depth}{suffix}" in names
        assert f"lw-refinenet-{depth}" in names
    assert "lw-refinenet-mobilenetv2" in names


def test_model_info_fields() -> None:
    info = model_info("refinenet-101-2scale")
    assert (info.family, info.backbone, info.variant) == ("refinenet", "resnet101", "2scale")
    info = model_info("lw-refinenet-mobilenetv2")
    assert (info.family, info.backbone, info.variant) == ("lw-refinenet", "mobilenetv2", "lw")
    for name in list_models():
        info = model_info(name)
        assert info.name == name and info.description and "\n" not in info.description
        assert info.family in ("refinenet", "lw-refinenet")
        assert info.variant in ("cascade4", "cascade2", "single", "2scale", "lw")


def _python_prints(code: str) -> str:
    """What `code` prints in a fresh interpreter (import side effects are per process)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_registry_does_not_import_torch() -> None:
    code = (
        "import sys, refine_cli.models as m; m.list_models(); m.model_info('lw-refinenet-50');"
        " print('torch' in sys.modules)"
    )
    assert _python_prints(code) == "False"


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(RefineError) as exc:
        create_model("lw-refinenet-5O")
    assert "unknown model" in exc.value.message
    assert "did you mean lw-refinenet-50" in exc.value.hint and "refinenet-152-2scale" in exc.value.hint


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_num_classes(bad) -> None:
    with pytest.raises(RefineError, match="num_classes"):
        create_model("lw-refinenet-mobilenetv2", num_classes=bad)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_parameter_counts(name: str) -> None:
    model = meta_model(name)
    assert count(model.parameters()) == PINNED[name]
    assert model.num_classes == 21 and model.model_name == name


@pytest.mark.parametrize("name", list_models())
def test_parameter_groups_are_disjoint_and_complete(name: str) -> None:
    model = meta_model(name, num_classes=5)
    encoder, decoder = model.encoder_parameters(), model.decoder_parameters()
    assert {id(p) for p in encoder}.isdisjoint(id(p) for p in decoder)
    assert len(encoder) + len(decoder) == len(list(model.parameters()))
    assert count(decoder) > 0 and count(encoder) > 0
    assert model.classifier.weight.shape[0] == 5


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_variant_sizes_are_sensible(depth: int) -> None:
    sizes = {
        s: count(meta_model(f"refinenet-{depth}{s}").parameters()) for s in ("", "-cascade2", "-single", "-2scale")
    }
    encoder = count(meta_model(f"refinenet-{depth}").encoder_parameters())
    # Fewer blocks -> fewer decoder parameters; 2-scale has two encoders and two adaptive paths per block.
    assert sizes["-single"] < sizes["-cascade2"] < sizes[""] < sizes["-2scale"]
    assert count(meta_model(f"refinenet-{depth}-2scale").encoder_parameters()) == 2 * encoder
    # Every variant's decoder differs from the 4-cascade only by whole blocks/paths, independent of depth.
    assert sizes[""] - sizes["-single"] == PINNED["refinenet-50"] - count(
        meta_model("refinenet-50-single").parameters()
    )
