"""The refine checkpoint: round trip, safe loading and one clear error for every bad file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from refine_cli.errors import RefineError
from refine_cli.models import create_model
from refine_cli.models.checkpoint import (
    FORMAT_VERSION,
    VOC_CLASSES,
    default_palette,
    load_checkpoint,
    save_checkpoint,
)

MODEL = "lw-refinenet-mobilenetv2"


def test_voc_colour_map_and_defaults() -> None:
    palette = default_palette(256)
    assert palette[:4] == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert palette[15] == [192, 128, 128] and palette[20] == [0, 64, 128]  # person, tvmonitor
    assert len({tuple(rgb) for rgb in palette}) == 256


def test_round_trip_builds_identical_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(MODEL, num_classes=3).eval()
    path = tmp_path / "run" / "best.pt"
    save_checkpoint(
        path,
        model_name=MODEL,
        model=model,
        num_classes=3,
        classes=["bg", "cat", "dog"],
        train_config={"lr": 5e-4, "data": tmp_path / "data", "crop": (500, 500)},
        metrics={"miou": 0.5},
    )
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temporary file left behind
    checkpoint = load_checkpoint(path)
    assert checkpoint.model == MODEL and checkpoint.num_classes == 3 and checkpoint.format_version == FORMAT_VERSION
    assert checkpoint.classes == ["bg", "cat", "dog"] and checkpoint.palette == default_palette(3)
    assert checkpoint.train_config == {"lr": 5e-4, "data": str(tmp_path / "data"), "crop": [500, 500]}
    assert checkpoint.metrics == {"miou": 0.5} and checkpoint.created and checkpoint.refine_version
    rebuilt = checkpoint.build_model().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_defaults_are_voc_for_21_classes(tmp_path: Path) -> None:
    model = create_model(MODEL, num_classes=21)
    save_checkpoint(tmp_path / "ck.pt", model_name=MODEL, state_dict=model.state_dict(), num_classes=21)
    checkpoint = load_checkpoint(tmp_path / "ck.pt")
    assert checkpoint.classes == VOC_CLASSES and checkpoint.palette == default_palette(21)


def _error(path: Path) -> RefineError:
    with pytest.raises(RefineError) as caught:
        load_checkpoint(path)
    return caught.value


def test_missing_corrupt_and_directory(tmp_path: Path) -> None:
    assert "does not exist" in _error(tmp_path / "nope.pt").message
    (tmp_path / "junk.pt").write_bytes(b"this is not a torch file")
    assert "is not a PyTorch file" in _error(tmp_path / "junk.pt").message
    good = tmp_path / "truncated.pt"
    torch.save({"w": torch.zeros(1000)}, good)
    good.write_bytes(good.read_bytes()[:300])  # a zip that was cut off during a copy
    assert "is not a readable PyTorch file" in _error(good).message
    assert "directory" in _error(tmp_path).message


def test_arbitrary_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "with_args.pt"  # training scripts often pickle their argparse.Namespace
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1e-3)}, path)
    error = _error(path)
    assert "pickled Python objects" in error.message and "refine convert" in error.hint


def test_official_state_dict_points_to_convert(tmp_path: Path) -> None:
    state = {"module.segm.weight": torch.zeros(21, 256, 3, 3), "module.conv_adapt2.weight": torch.zeros(1)}
    torch.save({"segmenter": state, "epoch": 3}, tmp_path / "official.pth.tar")
    error = _error(tmp_path / "official.pth.tar")
    assert "official lw-refinenet-mobilenetv2" in error.message
    assert "refine convert" in error.hint and "--model lw-refinenet-mobilenetv2" in error.hint
    torch.save({"weight": torch.zeros(2)}, tmp_path / "bare.pt")
    assert "bare state_dict" in _error(tmp_path / "bare.pt").message
    torch.save([1, 2, 3], tmp_path / "list.pt")
    assert "not a refine checkpoint" in _error(tmp_path / "list.pt").message


def _tampered(tmp_path: Path, **changes: object) -> Path:
    model = create_model(MODEL, num_classes=2)
    path = tmp_path / "ck.pt"
    save_checkpoint(path, model_name=MODEL, model=model, num_classes=2)
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)
    return path


def test_unknown_model_and_newer_format(tmp_path: Path) -> None:
    error = _error(_tampered(tmp_path, model="segformer-b9"))
    assert "segformer-b9" in error.message and "lw-refinenet-50" in error.hint
    error = _error(_tampered(tmp_path, format_version=FORMAT_VERSION + 1))
    assert "format version" in error.message and "upgrade" in error.hint


def test_weight_mismatch_names_the_keys(tmp_path: Path) -> None:
    model = create_model(MODEL, num_classes=2)
    state = model.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state[next(iter(state))]
    path = tmp_path / "ck.pt"
    save_checkpoint(path, model_name=MODEL, state_dict=state, num_classes=2)
    with pytest.raises(RefineError) as caught:
        load_checkpoint(path).build_model()
    assert "1 missing" in caught.value.message and "extra.weight" in caught.value.message
    save_checkpoint(path, model_name=MODEL, model=create_model(MODEL, num_classes=3), num_classes=2, classes=["a", "b"])
    with pytest.raises(RefineError, match="shape"):
        load_checkpoint(path).build_model()


def test_unsupported_values_are_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "x.pt", model_name=MODEL, state_dict={}, num_classes=1, extra={"f": object()})
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model_kwargs": {"num_classes": "abc"}}, "model_kwargs.num_classes must be an integer"),
        ({"model_kwargs": {"num_classes": 0}, "classes": [], "palette": []}, "num_classes is 0: it defines no classes"),
        ({"model_kwargs": {"num_classes": True}}, "model_kwargs.num_classes must be an integer"),
        ({"model_kwargs": {"num_classes": 2, "depth": 7}}, "model_kwargs has unknown argument(s) depth"),
        ({"model_kwargs": [2]}, "model_kwargs must be a dict"),
        ({"state_dict": None}, "has no state_dict"),
        ({"state_dict": {"w": "not a tensor"}}, "state_dict must map parameter names to tensors"),
        ({"classes": ["a", 3]}, "classes: class names must be text, not 3"),
        ({"classes": ["a", ""]}, "classes: a class name is empty"),
        ({"classes": ["a", "b\x1b[2J"]}, "classes: the class name 'b\\x1b[2J' contains control characters"),
        ({"classes": ["a", "b", "c"]}, "classes has 3 names for 2 classes"),
        ({"palette": "red"}, "palette must be a list of [r, g, b] colours"),
        ({"palette": [[0, 0, 0], [0, 0, 300]]}, "palette[1] must be [r, g, b] with integers 0..255"),
        ({"palette": [[0, 0, 0]]}, "palette has 1 colours for 2 classes"),
        ({"metrics": "best"}, "metrics must be a dict"),
        ({"format_version": "1"}, "format version '1'"),
    ],
)
def test_damaged_fields_are_named(tmp_path: Path, changes: dict, field: str) -> None:
    error = _error(_tampered(tmp_path, **changes))
    assert field in error.message and error.hint


def _crafted(tmp_path: Path, claim: int, deflated_record: int = 0) -> Path:
    """A torch.save file whose pickle claims `claim` floats for a 4-float record (or whose record is a
    deflated run of `deflated_record` zero bytes): a few KB that would make torch allocate far more."""
    import struct
    import zipfile

    source = tmp_path / "four.pt"
    torch.save({"w": torch.zeros(4)}, source)
    crafted = tmp_path / "crafted.pt"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(crafted, "w") as out:
        for info in original.infolist():
            data = original.read(info.filename)
            if info.filename.endswith("data.pkl") and claim:
                numel = b"J" + struct.pack("<i", claim)
                data = data.replace(b"cpuq\x06K\x04t", b"cpuq\x06" + numel + b"t").replace(
                    b"K\x00K\x04", b"K\x00" + numel
                )
            if info.filename.endswith("/data/0") and deflated_record:
                out.writestr(info.filename, bytes(deflated_record), compress_type=zipfile.ZIP_DEFLATED)
                continue
            out.writestr(info, data)
    return crafted


def test_files_claiming_more_than_they_hold_are_refused_before_loading(tmp_path: Path) -> None:
    from refine_cli.models.weights import read_torch_file

    with pytest.raises(RefineError, match=r"claims 200,000,000 bytes of tensors but holds [\d,]+ bytes"):
        read_torch_file(_crafted(tmp_path, claim=50_000_000))
    with pytest.raises(RefineError, match=r"unpacks to [\d,]+ bytes from a [\d,]+-byte file"):
        read_torch_file(_crafted(tmp_path, claim=0, deflated_record=50_000_000))
    assert read_torch_file(tmp_path / "four.pt")["w"].shape == (4,)
