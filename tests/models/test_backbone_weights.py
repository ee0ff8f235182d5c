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


def test_mobilenet_has_no_download() -> None:
    with pytest.raises(RefineError, match="no ImageNet weights") as exc:
        create_model("lw-refinenet-mobilenetv2", pretrained_backbone=True)
    assert "backbone_weights" in exc.value.hint


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
