"""`refine convert --from matconvnet`: files written in MATLAB's v7.3 conventions from the MATLAB code's
naming rules convert into checkpoints whose logits equal an independent NumPy run of the MATLAB network,
for every naming and CRP variant; everything else is refused with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from refine_cli.data.convert.datasets.tables import public_class_table
from refine_cli.data.load.normalize import input_normalization, normalize_image
from refine_cli.errors import RefineError
from refine_cli.models import create_model
from refine_cli.models.checkpoint import load_checkpoint
from refine_cli.models.convert import file_sha256
from refine_cli.models.matconvnet import MatConvNetModel, detect_layout
from refine_cli.models.matconvnet_import import convert_matconvnet, matconvnet_state_dict
from refine_cli.models.weights import check_keys
from tests.models import matconvnet_reference as ref
from tests.support.matconvnet_files import Variant, release_parameters, write_release_file
from tests.support.matlab_v73 import write_mat73
from tests.support.narrow_models import RESNET_BLOCKS, use_narrow_refinenet

# (file name, variant, void output, expected architecture options besides caffe_stride/resize_mode)
VARIANTS = {
    "voc-improved": ("refinenet_res101_voc2012.mat", Variant(), 21, {"crp_order": "conv-pool", "input_scale": 1.2}),
    "ade-older-names-original-crp": (
        "refinenet_res50_ade.mat",
        Variant(depth=50, adapt_prefix="adapt_stage", improved_crp=False, channels=151, conv1_bias=True),
        0,
        {"input_scale": 1.2},
    ),
    "sunrgbd-two-pools": (
        "refinenet_res50_sunrgbd.mat",
        Variant(depth=50, crp_stages=2, channels=38),
        0,
        {"crp_order": "conv-pool", "crp_stages": 2, "input_scale": 1.2},
    ),
    "person-parts-no-void-scale-1": (
        "person_parts_model.mat",
        Variant(depth=50, adapt_prefix="adapt_stage", improved_crp=False, crp_stages=3, channels=7, input_scale=1.0),
        None,
        {"crp_stages": 3},
    ),
}


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    use_narrow_refinenet(monkeypatch)


def _convert(tmp_path: Path, name: str, variant: Variant, **kwargs) -> tuple[Path, object]:
    src = write_release_file(tmp_path / name, variant, seed=3)
    return src, convert_matconvnet(src, tmp_path / "model.pt", public_class_table, **kwargs)


def _logits(checkpoint: Path, image: np.ndarray) -> np.ndarray:
    model = load_checkpoint(checkpoint).build_model().eval()
    mean, std = input_normalization(model)
    with torch.no_grad():
        return model(normalize_image(image, "cpu", mean, std)[None])[0].double().numpy().transpose(1, 2, 0)


@pytest.mark.parametrize("case", sorted(VARIANTS))
def test_converted_model_computes_what_matlab_computes(tmp_path: Path, narrow: None, case: str) -> None:
    name, variant, void, options = VARIANTS[case]
    src, report = _convert(tmp_path, name, variant)
    checkpoint = load_checkpoint(tmp_path / "model.pt")
    assert report.model == checkpoint.model == f"refinenet-{variant.depth}"
    assert checkpoint.architecture == {"caffe_stride": True, "resize_mode": "matlab-bicubic", **options}
    assert checkpoint.normalization["mean"] == [128 / 255] * 3 and checkpoint.normalization["std"] == [1 / 255] * 3
    assert (checkpoint.classes, checkpoint.palette) == public_class_table(report.dataset)
    assert checkpoint.extra["source_sha256"] == file_sha256(src) == report.source_sha256
    assert checkpoint.extra["matconvnet"]["void_output"] == void
    image = np.random.default_rng(7).integers(0, 256, (37, 51, 3), dtype=np.uint8)
    params, filters, biases = release_parameters(variant, seed=3)
    expected = ref.refinenet_scores(
        image, params, filters, biases, blocks=RESNET_BLOCKS[variant.depth], adapt_prefix=variant.adapt_prefix,
        crp_stages=variant.crp_stages, conv_first=variant.improved_crp, input_scale=variant.input_scale,
    )  # fmt: skip
    if void is not None:
        expected = np.delete(expected, void, axis=2)
    got = _logits(tmp_path / "model.pt", image)
    assert got.shape == expected.shape and got.shape[2] == report.num_classes
    scale = np.abs(expected).max()
    assert scale > 1.0  # the network did not collapse to nothing
    np.testing.assert_allclose(got, expected, atol=2e-5 * scale, rtol=0)


def test_full_size_152_name_set_maps_onto_refinenet_152() -> None:
    """The real widths: every name of a ResNet-152 release file has its key and its shape (no weights needed)."""
    variant = Variant(depth=152, narrow=False, channels=151)
    params, filters, biases = release_parameters(variant, seed=None)
    layout = detect_layout(set(params))
    assert (layout.depth, layout.crp_order, layout.crp_stages, layout.input_scale) == (152, "conv-pool", 4, 1.2)
    assert layout.blocks[4][-1] == "b35"
    state = matconvnet_state_dict(MatConvNetModel(params, filters, biases.reshape(-1)), layout, void=0)
    with torch.device("meta"):
        model = create_model("refinenet-152", num_classes=150, crp_order="conv-pool")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert check_keys(expected, state, optional=()) is None
    # the published RefineNet-152 count (21 classes: 133,696,085) plus 129 more 3x3x256 classifier rows and biases
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "batches" not in k) == 133_993_430


def _broken(tmp_path: Path, edit) -> Path:  # noqa: ANN001
    return write_release_file(tmp_path / "refinenet_res50_voc2012.mat", Variant(depth=50), seed=1, edit=edit)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p.pop("mflow_conv_g2_b1_conv_bias"), r"is missing parameter\(s\) mflow_conv_g2_b1_conv_bias"),
        (lambda p: p.update(extra_filter=np.ones((3, 3, 2, 2), np.float32)), r"unexpected parameter\(s\) extra_filter"),
        (
            lambda p: p.update(mflow_conv_g3_b2_conv_filter=np.ones((3, 3, 16, 17), np.float32)),
            r"wrong shape \(blocks\.2\.out_rcus\.1\.conv1\.weight: \(17, 16, 3, 3\) vs \(16, 16, 3, 3\)",
        ),
        (lambda p: p.update(mflow_conv_g1_b1_conv_bias=np.full((1, 32), np.nan, np.float32)), "NaN or infinite"),
        (lambda p: p.pop("mflow_conv_g4_pool3_outvar_pb4_filter"), "disagree on their pooling chain"),
    ],
)
def test_broken_files_are_refused(tmp_path: Path, narrow: None, edit, message: str) -> None:  # noqa: ANN001
    src = _broken(tmp_path, edit)
    with pytest.raises(RefineError, match=message):
        convert_matconvnet(src, tmp_path / "model.pt", public_class_table)
    assert not (tmp_path / "model.pt").exists()


def test_other_files_are_refused_with_what_they_are(tmp_path: Path, narrow: None) -> None:
    def refused(path: Path, message: str, **kwargs) -> None:
        with pytest.raises(RefineError, match=message):
            convert_matconvnet(path, tmp_path / "out.pt", public_class_table, **kwargs)
        assert not (tmp_path / "out.pt").exists()

    scipy.io.savemat(tmp_path / "v7.mat", {"net": np.ones((2, 2))})
    refused(tmp_path / "v7.mat", r"older MAT-file \(MATLAB 5.0 MAT-file.*\), not MATLAB v7.3")
    write_mat73(tmp_path / "other.mat", {"images": np.ones((4, 3), np.float32), "note": "not a network"})
    refused(tmp_path / "other.mat", r"holds no MatConvNet network .*its variables: images \(single\), note \(char\)")
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(600))
    refused(tmp_path / "photo.jpg", "is not a MATLAB v7.3 file")
    good = _broken(tmp_path, None)
    (tmp_path / "cut.mat").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    refused(tmp_path / "cut.mat", "damaged or truncated")
    refused(good, "but a ade20k model has 151", dataset="ade20k")
    refused(good, "not --model refinenet-101", expect_model="refinenet-101")
    ade = write_release_file(tmp_path / "refinenet_res50_voc2012_copy.mat", Variant(depth=50, channels=151), seed=1)
    refused(ade, "named like a voc model but has 151 outputs")


def test_an_array_claiming_too_many_values_is_refused_before_it_is_read(tmp_path: Path) -> None:
    import h5py

    from refine_cli import matfile

    with h5py.File(tmp_path / "lying.mat", "w", userblock_size=512) as handle:  # 2**27 singles, none written
        node = handle.create_dataset("w", shape=(1 << 27, 1), dtype=np.float32, chunks=(1024, 1))
        node.attrs.create("MATLAB_class", np.bytes_("single"))
    assert (tmp_path / "lying.mat").stat().st_size < 100_000
    with matfile.open_mat73(tmp_path / "lying.mat", "test file") as handle:
        with pytest.raises(RefineError, match="claims 134,217,728 values"):
            matfile.read_numeric(handle["w"], "w")
