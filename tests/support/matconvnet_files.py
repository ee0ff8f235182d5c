"""RefineNet model files as the MATLAB release writes them, generated from its code's naming rules.

The parameter names are produced the way guosheng/refinenet's MATLAB code produces them, by following
its variable names through `My_net_util` (`add_dim_reduce_layer`: '<input var>_dimred', outputs
'<layer>_varout'; `add_res_conv_block`: '<prefix>_b<j>_conv', '<prefix>_b<j>_conv_relu_varout_dimred',
joint '<prefix>_b<j>_joint_varout'), `gen_network_refine_group.m` (input paths 'adapt_input_path<k>' or,
in older files, 'adapt_stage<k>'; one RefineNet per level whose inputs are [previous output, level
input], summed by 'mflow_joint_g<g>'), `gen_network_pool_block.m` (original: pool then '<..>_pool<i>_outvar
_dimred'; improved: '<input var>_pb<i>' then pool) and MatConvNet's Caffe ResNet import. The file is
`net_config`, a `ref_obj` whose `ref.group_infos` hold the DagNN structs (`DagNN.saveobj`: vars, params,
layers, meta) and the loss group's SimpleNN classifier (filters, biases), written with MATLAB's v7.3
conventions (matlab_v73.py). Values are tiny random numbers with asymmetric kernels.

Widths: `narrow=True` matches tests/support/narrow_models.py (bottlenecks 8x thinner, RefineNet 32/16
channels), `narrow=False` the real model (shapes only are needed for name checks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tests.support.matlab_v73 import Cell, MatObject, MatWriter, StructArray
from tests.support.narrow_models import NARROW_LATERAL_WIDTHS, RESNET_BLOCKS


@dataclass(frozen=True)
class Variant:
    """Which release file to imitate."""

    depth: int = 101
    adapt_prefix: str = "adapt_input_path"  # older files: "adapt_stage"
    improved_crp: bool = True  # conv before pool (NYUD, Person-Parts, Context, SUN-RGBD, ADE models)
    crp_stages: int = 4
    input_scale: float = 1.2
    channels: int = 22  # classifier outputs, void included (VOC)
    conv1_bias: bool = False
    narrow: bool = True

    def with_(self, **changes: object) -> Variant:
        return replace(self, **changes)


class _Net:
    """Collects DagNN params and layers under MatConvNet/RefineNet naming."""

    def __init__(self, rng: np.random.Generator | None) -> None:
        self.rng, self.params, self.layers = rng, {}, []

    def _value(self, shape: tuple[int, ...], kind: str) -> np.ndarray:
        if self.rng is None:
            return np.zeros(shape, np.float32)  # names and shapes only
        if kind == "filter":
            fan_in = shape[0] * shape[1] * shape[2]
            return (self.rng.standard_normal(shape) * (0.6 / np.sqrt(fan_in))).astype(np.float32)
        return (self.rng.standard_normal(shape) * 0.05).astype(np.float32)

    def conv(self, name: str, inputs: str, output: str, shape: tuple[int, int, int, int], bias: bool) -> str:
        names = [f"{name}_filter"] + ([f"{name}_bias"] if bias else [])
        self.params[names[0]] = self._value(shape, "filter")
        if bias:
            self.params[names[1]] = self._value((1, shape[3]), "bias")
        pad = float((shape[0] - 1) // 2)
        block = {"size": np.array([shape], np.float64), "hasBias": bias, "pad": pad, "stride": 1.0}
        self.layers.append({"name": name, "type": "dagnn.Conv", "inputs": Cell([inputs]), "outputs": Cell([output]),
                            "params": Cell(names), "block": block})  # fmt: skip
        return output

    def bnorm(self, name: str, channels: int) -> None:
        if self.rng is None:
            mult, bias = np.zeros((channels, 1), np.float32), np.zeros((channels, 1), np.float32)
            moments = np.stack([np.zeros(channels), np.ones(channels)], axis=1).astype(np.float32)
        else:
            mult = self.rng.uniform(0.5, 1.5, (channels, 1)).astype(np.float32)
            bias = self.rng.uniform(-0.2, 0.2, (channels, 1)).astype(np.float32)
            sigma = self.rng.uniform(0.6, 1.4, channels)
            tiny = slice(None, None, max(1, channels // 3))
            sigma[tiny] = 0.0021  # sigma^2 below BatchNorm's eps: the converter's other path ...
            mult[tiny, 0] *= 0.0021  # ... with mult / sigma still about 1, so activations stay bounded
            mean = self.rng.uniform(-0.2, 0.2, channels)
            moments = np.stack([mean, sigma], axis=1).astype(np.float32)
        for part, value in (("mult", mult), ("bias", bias), ("moments", moments)):
            self.params[f"{name}_{part}"] = value

    # My_net_util.add_dim_reduce_layer: a 3x3 conv without bias named after its input variable
    def dim_reduce(self, var: str, cin: int, cout: int, layer: str | None = None) -> str:
        layer = layer or f"{var}_dimred"
        return self.conv(layer, var, f"{layer}_varout", (3, 3, cin, cout), bias=False)

    def res_conv_block(self, var: str, dim: int, count: int, prefix: str) -> str:
        """add_res_conv_block: ReLU '<b>_prev', conv '<b>_conv' (bias), ReLU, dimred, Sum '<b>_joint' with the input."""
        for j in range(1, count + 1):
            name = f"{prefix}_b{j}"
            self.conv(f"{name}_conv", f"{name}_prev_relu_varout", f"{name}_conv_outvar", (3, 3, dim, dim), bias=True)
            self.dim_reduce(f"{name}_conv_relu_varout", dim, dim)
            var = f"{name}_joint_varout"
        return var

    def pool_block(self, var: str, dim: int, prefix: str, stages: int, improved: bool) -> str:
        var = f"{prefix}_poolprev_relu_varout"
        for i in range(1, stages + 1):
            if improved:
                var = self.dim_reduce(var, dim, dim, layer=f"{var}_pb{i}")
                var = f"{prefix}_pool{i}_outvar"
            else:
                var = self.dim_reduce(f"{prefix}_pool{i}_outvar", dim, dim)
        return f"{prefix}_pool_joint_varout"


def _resnet(net: _Net, variant: Variant) -> None:
    """MatConvNet's import of the Caffe ResNet (prob, fc1000 and pool5 removed by the RefineNet code)."""
    planes = (64, 128, 256, 512)  # a stage's output is planes x 4; its bottleneck is planes wide (narrow: / 8)
    net.conv("conv1", "data", "conv1", (7, 7, 3, 64), bias=variant.conv1_bias)
    net.bnorm("bn_conv1", 64)
    channels = 64
    letters = variant.depth == 50
    for stage, count, plane in zip(range(2, 6), RESNET_BLOCKS[variant.depth], planes, strict=True):
        width, out = (plane // 8 if variant.narrow else plane), plane * 4
        for index in range(count):
            block = chr(ord("a") + index) if letters or index == 0 else f"b{index}"
            res, bn = f"res{stage}{block}", f"bn{stage}{block}"
            if index == 0:
                net.conv(f"{res}_branch1", "in", f"{res}_branch1", (1, 1, channels, out), bias=False)
                net.bnorm(f"{bn}_branch1", out)
            for part, shape in (("2a", (1, 1, channels, width)), ("2b", (3, 3, width, width)),
                                ("2c", (1, 1, width, out))):  # fmt: skip
                net.conv(f"{res}_branch{part}", "in", f"{res}_branch{part}", shape, bias=False)
                net.bnorm(f"{bn}_branch{part}", shape[3])
            channels = out


def _refinenets(net: _Net, variant: Variant) -> None:
    """gen_network_refine_group.m for the 4-cascade: paths l1 (res5) .. l4 (res2), then one RefineNet each."""
    widths = tuple(reversed(NARROW_LATERAL_WIDTHS)) if variant.narrow else (512, 256, 256, 256)
    tag = f"p_ims{variant.input_scale:.1f}".replace(".", "d")
    paths = []
    for k, (cin, width) in enumerate(zip((2048, 1024, 512, 256), widths, strict=True), start=1):
        var = net.dim_reduce(f"{tag}_outl{k}", cin, width)
        paths.append((net.res_conv_block(var, width, 2, f"{variant.adapt_prefix}{k}"), width))
    previous: tuple[str, int] | None = None
    for g, path in enumerate(paths, start=1):
        inputs = ([previous] if previous else []) + [path]
        dim = min(d for _, d in inputs)
        if len(inputs) > 1:
            [net.dim_reduce(var, d, dim) for var, d in inputs]
            var = f"mflow_joint_g{g}_varout"  # My_sum_layer
        else:
            var = inputs[0][0]
        var = net.pool_block(var, dim, f"mflow_conv_g{g}", variant.crp_stages, variant.improved_crp)
        previous = (net.res_conv_block(var, dim, 3, f"mflow_conv_g{g}"), dim)


def _build(variant: Variant, seed: int | None) -> tuple[_Net, _Net, np.ndarray, np.ndarray]:
    """The two DagNNs (ResNet, RefineNet) and the classifier (filters 3x3xCxK, biases 1xK); seed None: zeros."""
    rng = None if seed is None else np.random.default_rng(seed)
    resnet, refine = _Net(rng), _Net(rng)
    _resnet(resnet, variant)
    _refinenets(refine, variant)
    width = min(NARROW_LATERAL_WIDTHS) if variant.narrow else 256
    return (
        resnet,
        refine,
        resnet._value((3, 3, width, variant.channels), "filter"),
        resnet._value((1, variant.channels), "bias"),
    )


def release_parameters(variant: Variant, seed: int | None = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """What `write_release_file(variant, seed)` writes: (DagNN params, classifier filters 3x3xCxK, biases K)."""
    resnet, refine, filters, biases = _build(variant, seed)
    return {**resnet.params, **refine.params}, filters, biases.reshape(-1)


def _dag_struct(net: _Net) -> dict:
    """What `DagNN.saveobj` returns."""
    names = sorted({v for layer in net.layers for v in layer["outputs"].items})
    return {
        "vars": StructArray([{"name": name, "precious": False} for name in names]),
        "params": StructArray(
            [
                {"name": name, "value": value, "learningRate": 1.0, "weightDecay": 1.0}
                for name, value in net.params.items()
            ]
        ),  # fmt: skip
        "layers": StructArray(net.layers),
        "meta": {"normalization": {"averageImage": np.full((1, 1, 3), 128.0)}},
        "conserveMemory": True,
    }


def write_release_file(
    path: str | Path,
    variant: Variant = Variant(),
    seed: int = 0,
    edit: Callable[[dict[str, np.ndarray]], None] | None = None,
) -> Path:
    """A `refinenet_res*.mat` like cnn_save_model.m writes it; returns `path`.

    `edit(params)` may change the RefineNet DagNN's parameters first (to make broken files).
    """
    resnet, refine, filters, biases = _build(variant, seed)
    if edit is not None:
        edit(refine.params)
    classifier = {"type": "conv", "filters": filters, "biases": biases, "stride": 1.0, "pad": 1.0,
                  "filtersMomentum": None, "biasesMomentum": None}  # fmt: skip
    loss_layers = Cell([{"type": "dropout", "rate": 0.5}, classifier,
                        {"type": "my_custom", "custom_type": "dense_softmaxloss"}])  # fmt: skip

    def group(index: int, name: str, dag: dict | None, layers: Cell) -> dict:
        info = MatObject("ref_obj", {"ref": {"name": name, "layers": layers, "do_bp": True}})
        entry = {"child_group_idxes": None, "group_idx": float(index), "name": name, "use_dagnn": dag is not None,
                 "net_info": info}  # fmt: skip
        if dag is not None:
            entry["dag_net"] = dag
        return entry

    wrapper = Cell([{"type": "my_custom", "custom_type": "dagnn_wrapper"}])
    groups = Cell([
        group(1, "multi_featnet", None, Cell([])),
        group(2, "featnet_resnet", _dag_struct(resnet), wrapper),
        group(3, "refinenets", _dag_struct(refine), wrapper),
        group(4, "loss_group", None, loss_layers),
    ])  # fmt: skip
    ref = {"group_counter": 4.0, "group_infos": groups, "net_input_img_scales": np.array([[variant.input_scale]]),
           "predict_group_idx": 4.0, "cache_filename": ""}  # fmt: skip
    with MatWriter(path) as writer:
        writer.write("net_config", MatObject("ref_obj", {"ref": ref}))
    return Path(path)
