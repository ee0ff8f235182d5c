"""The architecture options that rebuild the MATLAB RefineNet: each changes the numbers the way the MATLAB
code does, defaults change nothing, and checkpoints keep the options (and their input normalisation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refine_cli.data.load.normalize import IMAGENET_MEAN, input_normalization
from refine_cli.errors import RefineError
from refine_cli.models import create_model
from refine_cli.models.backbones import ResNetEncoder
from refine_cli.models.blocks import ChainedResidualPool
from refine_cli.models.checkpoint import load_checkpoint, save_checkpoint
from refine_cli.models.matlab_resize import matlab_resize
from tests.models import matconvnet_reference as ref
from tests.support.narrow_models import use_narrow_refinenet

MATLAB = {"caffe_stride": True, "crp_order": "conv-pool", "crp_stages": 2, "resize_mode": "matlab-bicubic",
          "input_scale": 1.2}  # fmt: skip


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    use_narrow_refinenet(monkeypatch)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].detach().double().numpy().transpose(1, 2, 0)


@pytest.mark.parametrize(
    ("size", "target", "by_factor"),
    [((5, 7), (9, 13), True), ((32, 24), (63, 47), True), ((1, 2), (2, 4), True), ((97, 61), (116, 73), False)],
)
def test_matlab_resize_matches_imresize(size: tuple[int, int], target: tuple[int, int], by_factor: bool) -> None:
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    factor = max(target[0] / size[0], target[1] / size[1])
    expected = ref.imresize(_hwc(x), target, (factor, factor) if by_factor else None)
    got = _hwc(matlab_resize(x, target, by_factor=by_factor))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # PyTorch's own bicubic (a = -0.75, clamped borders) is measurably different: the test can tell them apart
    theirs = torch.nn.functional.interpolate(x, size=target, mode="bicubic", align_corners=False)
    assert np.abs(_hwc(theirs) - expected).max() > 1e-3


def test_caffe_stride_moves_the_stride_to_the_1x1_conv(narrow: None) -> None:
    torch.manual_seed(0)
    ours = ResNetEncoder(50, caffe_stride=True).eval()
    plain = ResNetEncoder(50).eval()
    plain.load_state_dict(ours.state_dict())
    for layer in (ours.layer2, ours.layer3, ours.layer4):
        assert layer[0].conv1.stride == (2, 2) and layer[0].conv2.stride == (1, 1)
    assert ours.layer1[0].conv1.stride == (1, 1)
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        a, b = ours(x), plain(x)
    assert [t.shape for t in a] == [t.shape for t in b]  # same sizes ...
    assert not torch.allclose(a[1], b[1])  # ... other numbers


@pytest.mark.parametrize("order", ["conv-pool", "pool-conv"])
def test_crp_orders_match_the_matlab_blocks(order: str) -> None:
    torch.manual_seed(1)
    crp = ChainedResidualPool(4, stages=3, order=order).eval()
    x = torch.randn(1, 4, 9, 11)
    conv_first = order == "conv-pool"
    params = {}
    for i, stage in enumerate(crp.convs, start=1):
        if conv_first:
            name = "g_poolprev_relu_varout_pb1" if i == 1 else f"g_pool{i - 1}_outvar_pb{i}"
        else:
            name = f"g_pool{i}_outvar_dimred"
        params[f"{name}_filter"] = stage.weight.detach().double().numpy().transpose(2, 3, 1, 0)
    expected = ref._crp(_hwc(x), params, "g", 3, conv_first)
    with torch.no_grad():
        got = _hwc(crp(torch.relu(x)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_input_scale_gives_logits_at_a_quarter_of_the_scaled_image() -> None:
    with torch.device("meta"):
        model = create_model("refinenet-50", num_classes=3, input_scale=1.2)
    assert model(torch.empty(1, 3, 45, 61, device="meta")).shape[-2:] == (14, 19)  # 54x73 -> 14x19


def test_options_are_checked_and_only_for_refinenet(narrow: None) -> None:
    with pytest.raises(RefineError, match="crp_order must be pool-conv or conv-pool"):
        create_model("refinenet-50", crp_order="sideways")
    with pytest.raises(RefineError, match="unknown architecture option"):
        create_model("refinenet-50", widths=3)
    with pytest.raises(RefineError, match="takes no architecture options"):
        create_model("lw-refinenet-50", caffe_stride=True)
    with pytest.raises(RefineError, match="input_scale does not apply"):
        create_model("refinenet-50-2scale", input_scale=1.2)
    assert create_model("refinenet-50", crp_stages=4, caffe_stride=False).architecture == {}  # defaults


def test_checkpoint_keeps_options_and_normalisation(tmp_path, narrow: None) -> None:
    torch.manual_seed(2)
    model = create_model("refinenet-50", num_classes=3, **MATLAB).eval()
    normalization = {"mean": [128 / 255] * 3, "std": [1 / 255] * 3}
    save_checkpoint(tmp_path / "m.pt", model_name="refinenet-50", model=model, num_classes=3,
                    normalization=normalization)  # fmt: skip
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.architecture == MATLAB and loaded.normalization == normalization
    rebuilt = loaded.build_model()
    assert rebuilt.architecture == MATLAB
    assert input_normalization(rebuilt) == (tuple(normalization["mean"]), tuple(normalization["std"]))
    # a model saved again (train from --init) carries both along without being told
    save_checkpoint(tmp_path / "again.pt", model_name="refinenet-50", model=rebuilt, num_classes=3)
    again = load_checkpoint(tmp_path / "again.pt")
    assert again.architecture == MATLAB and again.normalization == normalization
    x = torch.randn(1, 3, 40, 52)
    with torch.no_grad():
        torch.testing.assert_close(again.build_model().eval()(x), model(x))
    plain = create_model("refinenet-50", num_classes=3)
    assert input_normalization(plain)[0] == IMAGENET_MEAN


def test_bad_options_or_normalisation_in_a_file_are_refused(tmp_path) -> None:
    model = create_model("lw-refinenet-mobilenetv2", num_classes=2)
    save_checkpoint(tmp_path / "a.pt", model_name="lw-refinenet-mobilenetv2", model=model, num_classes=2)
    payload = torch.load(tmp_path / "a.pt", weights_only=True)
    for change, message in (
        ({"model_kwargs": {"num_classes": 2, "crp_order": "conv-pool"}}, "takes no architecture options"),
        ({"model_kwargs": {"num_classes": 2, "input_scale": "big"}}, "input_scale must be"),
        ({"normalization": {"mean": [0.5, 0.5], "std": [1, 1, 1]}}, "normalization.mean must be"),
        ({"normalization": {"mean": [0.5] * 3, "std": [1, 0, 1]}}, "normalization.std must be"),
    ):
        torch.save({**payload, **change}, tmp_path / "b.pt")
        with pytest.raises(RefineError, match=message):
            load_checkpoint(tmp_path / "b.pt")
