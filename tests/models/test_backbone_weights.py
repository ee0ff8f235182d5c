"""Backbone initialisation: local files (strict, safe) and torchvision's download (never really run here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from refine_cli.errors import RefineError
from refine_cli.models import create_model


@pytest.fixture(scope="module")
def resnet50_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.resnet50(weights=None).state_dict()  # includes fc.*, as ImageNet files do


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory, resnet50_state) -> Path:
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(resnet50_state, path)
    return path


def assert_encoder_equals(model, state: dict[str, torch.Tensor]) -> None:
    ours = model.encoder.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(ours[key], value), key


def test_local_resnet_file_loads_into_encoder(resnet50_file: Path, resnet50_state) -> None:
    model = create_model("lw-refinenet-50", num_classes=3, backbone_weights=str(resnet50_file))
    assert_encoder_equals(model, resnet50_state)


def test_wrapped_and_prefixed_files_load(tmp_path: Path, resnet50_state) -> None:
    path = tmp_path / "ddp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in resnet50_state.items()}, "epoch": 3}, path)
    assert_encoder_equals(create_model("lw-refinenet-50", backbone_weights=path), resnet50_state)


def test_missing_key_is_named(tmp_path: Path, resnet50_state) -> None:
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in resnet50_state.items() if k != "layer3.2.bn2.weight"}, path)
    with pytest.raises(RefineError) as exc:
        create_model("lw-refinenet-50", backbone_weights=path)
    assert "1 missing (layer3.2.bn2.weight)" in exc.value.message


def test_wrong_depth_is_rejected(resnet50_file: Path) -> None:
    with pytest.raises(RefineError, match="missing"):
        create_model("lw-refinenet-101", backbone_weights=resnet50_file)


@pytest.mark.parametrize(
    "content,match",
    [(b"not a checkpoint at all", "is not a PyTorch file"), (None, "does not exist")],
)
def test_unreadable_files(tmp_path: Path, content: bytes | None, match: str) -> None:
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RefineError, match=match):
        create_model("lw-refinenet-mobilenetv2", backbone_weights=path)


def test_truncated_file(tmp_path: Path, resnet50_file: Path) -> None:
    path = tmp_path / "truncated.pth"
    path.write_bytes(resnet50_file.read_bytes()[:100_000])
    with pytest.raises(RefineError, match="is not a readable PyTorch file"):
        create_model("lw-refinenet-50", backbone_weights=path)


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(RefineError, match="does not hold a state_dict"):
        create_model("lw-refinenet-mobilenetv2", backbone_weights=path)


def test_mobilenet_encoder_file_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = create_model("lw-refinenet-mobilenetv2")
    path = tmp_path / "mbv2_encoder.pth"
    torch.save(source.encoder.state_dict(), path)
    assert next(iter(source.encoder.state_dict())) == "layer1.0.weight"  # the official encoder layout
    loaded = create_model("lw-refinenet-mobilenetv2", num_classes=4, backbone_weights=path)
    assert_encoder_equals(loaded, source.encoder.state_dict())


@pytest.fixture(scope="module")
def torchvision_mobilenet() -> torchvision.models.MobileNetV2:
    """torchvision's MobileNetV2 with random weights AND random BatchNorm statistics, in eval mode."""
    torch.manual_seed(2)
    network = torchvision.models.mobilenet_v2(weights=None)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return network.eval()


def assert_features_equal_torchvision(model, network: torchvision.models.MobileNetV2) -> None:
    """The six taps of the official-layout encoder are torchvision's block outputs, bit for bit."""
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        taps = model.encoder.eval()(x)
        reference, y = [], x
        for index, block in enumerate(network.features[:18]):
            y = block(y)
            if index in (3, 6, 10, 13, 16, 17):  # ends of the 24/32/64/96/160/320-channel stages
                reference.append(y)
    assert [tuple(t.shape) for t in taps] == [tuple(r.shape) for r in reference]
    for ours, theirs in zip(taps, reference, strict=True):
        assert torch.equal(ours, theirs)


def test_torchvision_mobilenet_file_maps_exactly(tmp_path: Path, torchvision_mobilenet) -> None:
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(torchvision_mobilenet.state_dict(), path)  # with features.18 and the classifier, as released
    model = create_model("lw-refinenet-mobilenetv2", num_classes=3, backbone_weights=path)
    assert_features_equal_torchvision(model, torchvision_mobilenet)
    extra = model.encoder.layer2[0].output[0]  # the official layout's t=1 expansion: the identity
    assert torch.equal(extra[0].weight[:, :, 0, 0], torch.eye(32))


def test_mobilenet_imagenet_weights_come_through_the_weights_api(monkeypatch, torchvision_mobilenet) -> None:
    calls = []

    def fake(url, *args, **kwargs):
        calls.append((url, kwargs))
        return torchvision_mobilenet.state_dict()

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", fake)
    model = create_model("lw-refinenet-mobilenetv2", num_classes=3, pretrained_backbone=True)
    assert_features_equal_torchvision(model, torchvision_mobilenet)
    assert calls[0][0] == torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.url
    assert calls[0][1].get("weights_only") is True


def test_cached_mobilenet_weights_are_read_from_the_hub_cache(tmp_path: Path, monkeypatch, torchvision_mobilenet):
    """The real download path, minus the network: the file already sits in the torch hub cache."""
    url = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.url
    cache = tmp_path / "hub"
    (cache / "checkpoints").mkdir(parents=True)
    torch.save(torchvision_mobilenet.state_dict(), cache / "checkpoints" / url.rsplit("/", 1)[-1])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(cache))
    from refine_cli.engine.train.own_data import imagenet_weights_available

    assert imagenet_weights_available("lw-refinenet-mobilenetv2")
    assert_features_equal_torchvision(create_model("lw-refinenet-mobilenetv2", pretrained_backbone=True),
                                      torchvision_mobilenet)  # fmt: skip


def test_a_torchvision_file_of_another_network_is_named(tmp_path: Path) -> None:
    path = tmp_path / "v3.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), path)
    with pytest.raises(RefineError, match="do not fit the model"):
        create_model("lw-refinenet-mobilenetv2", backbone_weights=path)


def test_both_sources_are_refused(resnet50_file: Path) -> None:
    with pytest.raises(RefineError, match="both"):
        create_model("lw-refinenet-50", pretrained_backbone=True, backbone_weights=resnet50_file)


def test_download_failure_suggests_local_file(monkeypatch) -> None:
    def offline(url, *args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(RefineError) as exc:
        create_model("lw-refinenet-50", pretrained_backbone=True)
    assert "resnet50-" in exc.value.message and "name resolution" in exc.value.message
    assert "--backbone-weights FILE" in exc.value.hint


def test_download_success_loads_safely(monkeypatch, resnet50_state) -> None:
    calls = []

    def fake(url, *args, **kwargs):
        calls.append((url, kwargs))
        return resnet50_state

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", fake)
    model = create_model("lw-refinenet-50", pretrained_backbone=True)
    assert_encoder_equals(model, resnet50_state)
    assert calls[0][0].startswith("https://download.pytorch.org/models/resnet50")
    assert calls[0][1].get("weights_only") is True
