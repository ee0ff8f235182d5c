"""`refine convert --from matconvnet`: a RefineNet model of the MATLAB release as a refine checkpoint.

Every parameter of the file is mapped to one key of refine's `refinenet-N` (none left over, none
missing, every shape checked); the architecture options rebuild the MATLAB network (Caffe strides, its
CRP order and stage count, MATLAB's bicubic resize between levels, the x1.2 input) and the checkpoint
records the input normalisation (RGB 0-255 minus 128), so predict, eval, export, bench and `train
--init` use the model as it was trained. Conversions are exact up to float rounding:

- conv filters H x W x Cin x Cout -> Cout x Cin x H x W (both are correlations);
- BatchNorm [mean, sigma] -> running_mean = mean, running_var = sigma^2 - eps, so that
  sqrt(running_var + eps) is sigma again; where sigma^2 <= eps the variance is 0 and the weight is
  scaled by sqrt(eps) / sigma instead; a conv1 bias (Caffe ResNet-50) moves into running_mean;
- the void output of the classifier (see `matconvnet.MAT_DATASETS`) is dropped.

This was checked against files written in MATLAB's v7.3 conventions from the MATLAB code's parameter
names and layout (tests/support/matconvnet_files.py), not yet against a released file: the report
says so and gives the file's sha256 to report.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from refine_cli.errors import RefineError
from refine_cli.models.matconvnet import WHERE, Layout, MatConvNetModel, dataset_for, detect_layout, read_matconvnet

BN_EPS = 1e-5  # torchvision's BatchNorm2d
MATLAB_INPUT = {"mean": [128 / 255] * 3, "std": [1 / 255] * 3, "note": "RGB 0-255 minus 128 (MatConvNet RefineNet)"}
CHECKED = (
    "checked against files built from the MATLAB code's names and layout, not yet against a released file: "
    "please report the sha256 below with the result"
)
ClassTable = Callable[[str], tuple[list[str], list[list[int]]]]  # refine dataset name -> (classes, palette)


class _Mapper:
    """Builds refine's state_dict from the MATLAB parameters, remembering which names it used."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        self.params, self.state, self.used, self.missing = params, {}, set(), []

    def take(self, name: str) -> np.ndarray | None:
        if name not in self.params:
            self.missing.append(name)
            return None
        self.used.add(name)
        return self.params[name]

    def conv(self, key: str, name: str) -> None:
        value = self.take(name)
        if value is not None and value.ndim > 4:
            raise RefineError(f"{name} has {value.ndim} dimensions; a conv filter has 4 (H x W x Cin x Cout)")
        if value is not None:
            value = value.reshape(value.shape + (1,) * (4 - value.ndim))
            self.state[key] = torch.from_numpy(np.ascontiguousarray(value.transpose(3, 2, 0, 1), np.float32))

    def bias(self, key: str, name: str) -> None:
        value = self.take(name)
        if value is not None:
            self.state[key] = torch.from_numpy(np.asarray(value, np.float32).reshape(-1))

    def bnorm(self, key: str, name: str, conv_bias: np.ndarray | None = None) -> None:
        mult, bias, moments = (self.take(f"{name}_{part}") for part in ("mult", "bias", "moments"))
        if mult is None or bias is None or moments is None:
            return
        channels = mult.size
        if moments.shape != (channels, 2) or bias.size != channels:
            raise RefineError(
                f"{name}: {channels} multipliers, {bias.size} biases and moments of shape "
                f"{'x'.join(map(str, moments.shape))}; expected {channels}x2 moments",
                hint="the file is damaged or not a RefineNet model",
            )
        weight, mean, sigma = (np.asarray(a, np.float64).reshape(-1) for a in (mult, moments[:, 0], moments[:, 1]))
        if not (np.all(np.isfinite(sigma)) and np.all(sigma > 0)):
            raise RefineError(f"{name}_moments has a sigma that is not positive: the file is damaged")
        if conv_bias is not None:
            mean = mean - np.asarray(conv_bias, np.float64).reshape(-1)
        var = sigma * sigma - BN_EPS
        tiny = var <= 0
        weight = np.where(tiny, weight * np.sqrt(BN_EPS) / sigma, weight)
        for leaf, value in (("weight", weight), ("bias", bias), ("running_mean", mean),
                            ("running_var", np.where(tiny, 0.0, var))):  # fmt: skip
            self.state[f"{key}.{leaf}"] = torch.from_numpy(np.asarray(value, np.float32).reshape(-1))
        self.state[f"{key}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)

    def rcus(self, key: str, prefix: str, count: int) -> None:
        for j in range(1, count + 1):
            self.conv(f"{key}.{j - 1}.conv1.weight", f"{prefix}_b{j}_conv_filter")
            self.bias(f"{key}.{j - 1}.conv1.bias", f"{prefix}_b{j}_conv_bias")
            self.conv(f"{key}.{j - 1}.conv2.weight", f"{prefix}_b{j}_conv_relu_varout_dimred_filter")


def _encoder(mapper: _Mapper, layout: Layout) -> None:
    mapper.conv("encoder.conv1.weight", "conv1_filter")
    conv1_bias = mapper.take("conv1_bias") if layout.conv1_bias else None
    mapper.bnorm("encoder.bn1", "bn_conv1", conv1_bias)
    for stage, names in layout.blocks.items():
        for index, block in enumerate(names):
            key, res, bn = f"encoder.layer{stage - 1}.{index}", f"res{stage}{block}", f"bn{stage}{block}"
            for part, ours in (("2a", "1"), ("2b", "2"), ("2c", "3")):
                mapper.conv(f"{key}.conv{ours}.weight", f"{res}_branch{part}_filter")
                mapper.bnorm(f"{key}.bn{ours}", f"{bn}_branch{part}")
            if index == 0:
                mapper.conv(f"{key}.downsample.0.weight", f"{res}_branch1_filter")
                mapper.bnorm(f"{key}.downsample.1", f"{bn}_branch1")


def _decoder(mapper: _Mapper, layout: Layout) -> None:
    from refine_cli.models.matconvnet import ADAPT_RCUS, LEVELS, OUTPUT_RCUS

    for k in range(1, LEVELS + 1):
        block, adapt, flow = f"blocks.{k - 1}", f"{layout.adapt_prefix}{k}", f"mflow_conv_g{k}"
        mapper.conv(f"{block}.lateral.0.dimred.weight", f"{layout.input_tag}_outl{k}_dimred_filter")
        mapper.rcus(f"{block}.lateral.0.rcus", adapt, ADAPT_RCUS)
        if k > 1:  # My_sum_layer's inputs: this level's adapted map and the previous block's output
            mapper.conv(f"{block}.fuse.convs.0.weight", f"{adapt}_b{ADAPT_RCUS}_joint_varout_dimred_filter")
            mapper.conv(
                f"{block}.fuse.convs.1.weight", f"mflow_conv_g{k - 1}_b{OUTPUT_RCUS}_joint_varout_dimred_filter"
            )
        for i in range(1, layout.crp_stages + 1):
            if layout.crp_order == "conv-pool":
                name = f"{flow}_poolprev_relu_varout_pb1" if i == 1 else f"{flow}_pool{i - 1}_outvar_pb{i}"
            else:
                name = f"{flow}_pool{i}_outvar_dimred"
            mapper.conv(f"{block}.crp.convs.{i - 1}.weight", f"{name}_filter")
        mapper.rcus(f"{block}.out_rcus", flow, OUTPUT_RCUS)


def matconvnet_state_dict(model: MatConvNetModel, layout: Layout, void: int | None) -> dict[str, torch.Tensor]:
    """refine's `refinenet-N` state_dict from the file's parameters; RefineError names missing or extra ones."""
    mapper = _Mapper(model.params)
    _encoder(mapper, layout)
    _decoder(mapper, layout)
    extra = sorted(set(model.params) - mapper.used)
    for what, names in (("is missing", mapper.missing), ("has unexpected", extra)):
        if names:
            more = f", ... (+{len(names) - 3})" if len(names) > 3 else ""
            raise RefineError(
                f"the file {what} parameter(s) {', '.join(names[:3])}{more} ({len(names)}) for {layout.describe()}",
                hint="the file is incomplete or a variant refine does not know; please report it",
            )
    filters, biases = model.filters, model.biases
    if void is not None:
        filters, biases = np.delete(filters, void, axis=3), np.delete(biases, void)
    mapper.state["classifier.weight"] = torch.from_numpy(
        np.ascontiguousarray(filters.transpose(3, 2, 0, 1), np.float32)
    )
    mapper.state["classifier.bias"] = torch.from_numpy(np.asarray(biases, np.float32))
    if not (np.isfinite(filters).all() and np.isfinite(biases).all()):
        raise RefineError("the classifier holds NaN or infinite values: the file is damaged")
    return mapper.state


@dataclass(frozen=True)
class MatConvNetReport:
    """What `refine convert --from matconvnet` wrote (the `--json` report)."""

    model: str
    architecture: dict[str, Any]
    layout: str
    dataset: str
    num_classes: int
    void_output: int | None
    params: int
    source: str
    source_sha256: str
    source_params: int
    out: str
    checked: str = CHECKED

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def convert_matconvnet(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    class_table: ClassTable,
    dataset: str | None = None,
    overwrite: bool = False,
    expect_model: str | None = None,
    expect_classes: int | None = None,
) -> MatConvNetReport:
    """Convert the MATLAB RefineNet model `src` into a refine checkpoint at `out`.

    `class_table(name)` gives refine's class names and colours of a dataset ('voc', 'ade20k', ...);
    `dataset` overrides the dataset that the classifier's output count identifies. `expect_model` /
    `expect_classes` (the user's --model / --num-classes) must agree with the file, or nothing is written.
    """
    from refine_cli.fileio import ensure_free_space
    from refine_cli.guards import refuse_output_over_inputs
    from refine_cli.models import model_info
    from refine_cli.models.checkpoint import save_checkpoint
    from refine_cli.models.convert import file_sha256

    src, out = Path(src), Path(out)
    if expect_model is not None:
        expect_model = model_info(expect_model).name  # a typo fails before the file is read
    if out.exists() and not overwrite:
        raise RefineError(f"{out} already exists", hint="choose another --out or pass --force to replace it")
    refuse_output_over_inputs({"--out": out}, {"MatConvNet model": src})
    model = read_matconvnet(src)
    layout = detect_layout(set(model.params))
    chosen = dataset_for(src, model.biases.size, dataset)
    state = matconvnet_state_dict(model, layout, chosen.void)
    num_classes = chosen.channels - (chosen.void is not None)
    architecture = {"caffe_stride": True, "crp_order": layout.crp_order, "crp_stages": layout.crp_stages,
                    "resize_mode": "matlab-bicubic", "input_scale": layout.input_scale}  # fmt: skip
    name = f"refinenet-{layout.depth}"
    for given, found, flag in ((expect_model, name, "--model"), (expect_classes, num_classes, "--num-classes")):
        if given is not None and given != found:
            raise RefineError(f"{src.name} holds a {name} with {num_classes} classes, not {flag} {given}",
                              hint=f"drop {flag}: the file says what it is")  # fmt: skip
    skeleton = _fitting_skeleton(src, name, num_classes, architecture, state)
    classes, palette = class_table(chosen.refine_dataset)
    ensure_free_space(out.parent, sum(v.numel() * v.element_size() for v in state.values()), "write the checkpoint")
    sha = file_sha256(src)
    save_checkpoint(
        out, model_name=name, state_dict=state, num_classes=num_classes, classes=classes, palette=palette,
        model_kwargs=skeleton.architecture, normalization=MATLAB_INPUT,
        extra={"converted_from": src.name, "source_sha256": sha, "source_format": f"MatConvNet RefineNet ({WHERE})",
               "source_params": len(model.params) + 2, "dataset": {"name": chosen.refine_dataset},
               "matconvnet": {"layout": layout.describe(), "dataset": chosen.token, "void_output": chosen.void,
                              "void": "dropped" if chosen.void is not None else "none", "class_source": chosen.source,
                              "structs": model.structs, "checked": CHECKED}},
    )  # fmt: skip
    return MatConvNetReport(
        model=name, architecture=skeleton.architecture, layout=layout.describe(), dataset=chosen.refine_dataset,
        num_classes=num_classes, void_output=chosen.void,
        params=sum(p.numel() for p in skeleton.parameters()), source=str(src), source_sha256=sha,
        source_params=len(model.params) + 2, out=str(out),
    )  # fmt: skip


def _fitting_skeleton(
    src: Path, name: str, num_classes: int, architecture: dict[str, Any], state: dict[str, torch.Tensor]
) -> torch.nn.Module:
    """The refine model (weightless, on the meta device) that the converted weights must fill exactly."""
    from refine_cli.models import create_model
    from refine_cli.models.weights import check_keys

    with torch.device("meta"):
        skeleton = create_model(name, num_classes=num_classes, **architecture)
    problem = check_keys({k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, state, optional=())
    if problem:
        raise RefineError(f"the weights of {src.name} do not fit {name}: {problem}",
                          hint="the file is damaged or a variant refine does not know; please report it")  # fmt: skip
    return skeleton


__all__ = ["CHECKED", "MATLAB_INPUT", "MatConvNetReport", "convert_matconvnet", "matconvnet_state_dict"]
