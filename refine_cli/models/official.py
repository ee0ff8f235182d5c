"""Import (and export) the official checkpoints' state_dicts: the key maps between their names and ours.

Official files come from DrSleep/light-weight-refinenet (LW ResNet-50/101/152, LW MobileNetV2) and
DrSleep/refinenet-pytorch (RefineNet-101; the same names serve 50/152). Their loaders used
strict=False, which silently loaded nothing when names drifted; here every key must map and every
shape must fit, or a one-line RefineError names what is missing or unexpected.

Encoder keys are identical on both sides (torchvision's / the official MobileNetV2's) under our
`encoder.` prefix; decoder modules map one to one (see `_decoder_map`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from refine_cli.errors import RefineError
from refine_cli.models.registry import create_model, model_info
from refine_cli.models.weights import check_keys, classifier_classes, unwrap_state_dict

SUPPORTED = (
    "lw-refinenet-50",
    "lw-refinenet-101",
    "lw-refinenet-152",
    "lw-refinenet-mobilenetv2",
    "refinenet-50",
    "refinenet-101",
    "refinenet-152",
)
# The classifier of the official models: `segm` in LW-MobileNetV2, `clf_conv` in every ResNet model.
_CLASSIFIER = {"lw-refinenet-mobilenetv2": "segm"}
OFFICIAL_CLASSIFIERS = ("clf_conv", "segm")
_RESNET_ENCODER = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")
_MOBILENET_ENCODER = tuple(f"layer{i}" for i in range(1, 9))


def _resnet_decoder_map(full: bool) -> dict[str, str]:
    """Official module path -> ours for the (LW or full) ResNet cascade; official stage k is our block k-1."""
    names = {"clf_conv": "classifier"}
    for k in range(1, 5):
        block = f"blocks.{k - 1}"
        names[f"p_ims1d2_outl{k}_dimred"] = f"{block}.lateral.0.dimred"
        for i in range(1, 5):
            names[f"mflow_conv_g{k}_pool.0.{i}_outvar_dimred"] = f"{block}.crp.convs.{i - 1}"
        if k > 1:  # the lateral's fusion conv
            names[f"adapt_stage{k}_b2_joint_varout_dimred"] = f"{block}.fuse.convs.0"
        if k < 4:  # the conv on this stage's output is the next block's fusion conv for its cascade input
            names[f"mflow_conv_g{k}_b3_joint_varout_dimred"] = f"blocks.{k}.fuse.convs.1"
        if full:
            for prefix, ours, count in (
                (f"adapt_stage{k}_b", "lateral.0.rcus", 2),
                (f"mflow_conv_g{k}_b", "out_rcus", 3),
            ):
                for j in range(1, count + 1):
                    names[f"{prefix}.0.{j}_conv"] = f"{block}.{ours}.{j - 1}.conv1"
                    names[f"{prefix}.0.{j}_conv_relu_varout_dimred"] = f"{block}.{ours}.{j - 1}.conv2"
    return names


def _mobilenet_decoder_map() -> dict[str, str]:
    """Official LW-MobileNetV2 decoder names -> ours (block order: 1/32, 1/16, 1/8, 1/4)."""
    names = {"segm": "classifier"}
    laterals = (("conv8", "conv7"), ("conv5", "conv6"), ("conv4",), ("conv3",))
    for b, convs in enumerate(laterals):
        for index, name in enumerate(convs):
            names[name] = f"blocks.{b}.lateral.{index}.dimred"
        for i in range(1, 5):
            names[f"crp{4 - b}.0.{i}_outvar_dimred"] = f"blocks.{b}.crp.convs.{i - 1}"
    for b, name in ((1, "conv_adapt4"), (2, "conv_adapt3"), (3, "conv_adapt2")):
        names[name] = f"blocks.{b}.fuse.convs.{len(laterals[b])}"
    return names


def _maps(model_name: str) -> tuple[dict[str, str], tuple[str, ...]]:
    info = model_info(model_name)
    if info.name not in SUPPORTED:
        raise RefineError(
            f"no official checkpoint exists for {info.name}",
            hint=f"official weights exist for: {', '.join(SUPPORTED)}",
        )
    if info.backbone == "mobilenetv2":
        return _mobilenet_decoder_map(), _MOBILENET_ENCODER
    return _resnet_decoder_map(full=info.family == "refinenet"), _RESNET_ENCODER


def official_to_ours(model_name: str, key: str) -> str | None:
    """Our name for one official key, or None when the key belongs to no module of this model."""
    decoder, encoder_roots = _maps(model_name)
    if key.split(".", 1)[0] in encoder_roots:
        return f"encoder.{key}"
    module, _, leaf = key.rpartition(".")
    return f"{decoder[module]}.{leaf}" if module in decoder else None


def ours_to_official(model_name: str, key: str) -> str | None:
    """The official name for one of our keys, or None when the official model has no such key."""
    decoder, encoder_roots = _maps(model_name)
    if key.startswith("encoder.") and key[len("encoder.") :].split(".", 1)[0] in encoder_roots:
        return key[len("encoder.") :]
    inverse = {ours: theirs for theirs, ours in decoder.items()}
    module, _, leaf = key.rpartition(".")
    return f"{inverse[module]}.{leaf}" if module in inverse else None


def official_num_classes(model_name: str, state_dict: Mapping[str, Tensor]) -> int:
    """The class count an official state_dict was trained for, read from its classifier (21 if absent)."""
    classifier = _CLASSIFIER.get(model_info(model_name).name, "clf_conv")
    return classifier_classes(_plain_state(state_dict), (classifier,)) or 21


def guess_official_model(state_dict: Mapping[str, Tensor]) -> str | None:
    """Which official architecture a state_dict belongs to, from its key names (None if unknown)."""
    if "segm.weight" in state_dict and "conv_adapt2.weight" in state_dict:
        return "lw-refinenet-mobilenetv2"
    if "clf_conv.weight" not in state_dict:
        return None
    blocks = {int(key.split(".")[1]) for key in state_dict if key.startswith("layer3.")}
    depth = {6: "50", 23: "101", 36: "152"}.get(len(blocks))
    if depth is None:
        return None
    full = any(key.startswith("adapt_stage1_b.") for key in state_dict)
    return f"refinenet-{depth}" if full else f"lw-refinenet-{depth}"


def _plain_state(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The state_dict without a DataParallel `module.` prefix (as every other reader sees it)."""
    return unwrap_state_dict(state_dict) or dict(state_dict)


def _our_shapes(model_name: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = create_model(model_name, num_classes=num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def import_official_state_dict(model_name: str, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Translate an official state_dict to our key names, strictly.

    Accepts a `module.` prefix and missing `num_batches_tracked` entries (filled with 0 so the result
    loads with a strict `load_state_dict`). The class count comes from the checkpoint's classifier;
    build the model with `official_num_classes(...)` classes.
    """
    model_name = model_info(model_name).name
    _maps(model_name)  # unsupported names fail before anything else
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise RefineError("an official checkpoint must be a state_dict (names -> tensors)")
    given = _plain_state(state_dict)
    ours = _our_shapes(model_name, official_num_classes(model_name, given))
    expected = {}
    for key, shape in ours.items():
        official = ours_to_official(model_name, key)
        if official is None:  # a module the map forgot: a bug here, not in the user's file
            raise AssertionError(f"{model_name}: no official name for {key}")
        expected[official] = shape
    problem = check_keys(expected, given)
    if problem:
        raise RefineError(
            f"the checkpoint does not match the official {model_name}: {problem}",
            hint="check that the file is the official checkpoint for this model (and not another depth)",
        )
    result = {official_to_ours(model_name, k): v for k, v in given.items()}
    for key in ours:
        if key not in result and key.endswith("num_batches_tracked"):
            result[key] = torch.tensor(0, dtype=torch.long)
    return {key: result[key] for key in ours}


def export_official_state_dict(model_name: str, our_state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Translate our state_dict to the official names (so official code can load our weights)."""
    model_name = model_info(model_name).name
    out = {}
    unknown = []
    for key, value in _plain_state(our_state_dict).items():
        official = ours_to_official(model_name, key)
        if official is None:
            unknown.append(key)
        else:
            out[official] = value
    if unknown:
        raise RefineError(
            f"{len(unknown)} keys have no official name for {model_name} ({', '.join(unknown[:3])})",
            hint="export a state_dict of this exact model",
        )
    return out
