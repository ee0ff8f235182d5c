"""The original RefineNet release (guosheng/refinenet, MATLAB/MatConvNet): what its model files hold.

`main/cnn_save_model.m` writes `net_config`, a `ref_obj` handle object, with `save(..., '-v7.3')`. Its
groups hold `dag_net` structs made by MatConvNet's `DagNN.saveobj` (fields vars, params, layers, meta)
for the ResNet and the RefineNet cascade, and the classifier is a SimpleNN conv layer (fields type,
filters, biases, stride, pad) of the loss group. `read_matconvnet` finds them by walking the file
(`refine_cli/matfile.py`); `detect_layout` reads the architecture from the parameter names:

- ResNet (MatConvNet's Caffe import): `conv1_filter`, `bn_conv1_{mult,bias,moments}`,
  `res{2..5}{a,b,c.. | a,b1..bN}_branch{1,2a,2b,2c}_filter` and `bn..._{mult,bias,moments}`; the block
  counts give the depth (50/101/152); the stride of a stage is in its first 1x1 conv (`caffe_stride`).
- RefineNet (`main/gen_network_refine_group.m`, `My_net_util.m`, `gen_network_pool_block.m`), 4-cascade:
  lateral `p_ims1d2_outl{k}_dimred` ("ims1d2": the image enters at scale 1.2), input RCUs
  `adapt_input_path{k}_b{j}_conv` / `..._conv_relu_varout_dimred` (older files: `adapt_stage{k}`), fusion
  `adapt_..{k}_b2_joint_varout_dimred` + `mflow_conv_g{k-1}_b3_joint_varout_dimred`, chained residual
  pooling either original (`mflow_conv_g{k}_pool{i}_outvar_dimred`: pool then conv) or improved
  (`..._poolprev_relu_varout_pb1`, `..._pool{i-1}_outvar_pb{i}`: conv then pool), output RCUs
  `mflow_conv_g{k}_b{1..3}_...`.
- Classifier `filters` 3x3xCxK and `biases` 1xK, K with the dataset's "void" class (`gen_class_info_*.m`):
  void pixels were excluded from the loss (`cnn_layer_dense_softmaxloss_forward.m`), so that output
  was only ever pushed down; the import drops it.

Arrays are single, H x W x Cin x Cout (correlation, as PyTorch); BatchNorm `moments` are [mean,
sigma] with sigma = sqrt(var + eps) already (`vl_nnbnorm` adds no epsilon when given moments).
`matconvnet_import.py` turns all this into a refine checkpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refine_cli import matfile
from refine_cli.errors import RefineError

DAGNN_FIELDS = {"vars", "params", "layers"}
CLASSIFIER_FIELDS = {"filters", "biases"}
MAX_TOTAL_VALUES = 400_000_000  # the largest release (ResNet-152) has about 134 M
RESNET_BLOCKS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
ADAPT_PREFIXES = ("adapt_input_path", "adapt_stage")
ADAPT_RCUS, OUTPUT_RCUS, LEVELS = 2, 3, 4  # the release's counts, which refine's RefineNet has too
_BLOCK_RE = re.compile(r"^res([2-5])([a-z]\d*)_branch2a_filter$")
_INPUT_RE = re.compile(r"^p_ims(\d+)d(\d+)_outl(\d+)_dimred_filter$")
WHERE = "https://github.com/guosheng/refinenet"


@dataclass(frozen=True)
class MatDataset:
    """A dataset of the release: its file-name token, refine's dataset for the class table, and its outputs."""

    token: str  # refinenet_res101_<token>.mat
    refine_dataset: str  # the unified dataset whose class names and colours the checkpoint gets
    channels: int  # classifier outputs in the file, void included
    void: int | None  # index of the void output, or None
    source: str  # where the MATLAB code says so


MAT_DATASETS = (
    MatDataset("voc2012", "voc", 22, 21, "gen_class_info_voc.m: labels 0..20, then void (255)"),
    MatDataset("cityscapes", "cityscapes", 20, 19, "gen_class_info_cityscapes.m: trainIds 0..18, then void"),
    MatDataset("nyud", "nyudv2", 41, 40, "gen_class_info_nyud.m: labels 1..40, then void (255)"),
    MatDataset("person_parts", "person-part", 7, None, "gen_class_info_person_parts.m: 0..6, no void output"),
    MatDataset("pascalcontext", "context", 60, None, "gen_class_info_pascalcontext.m: 0..59, no void output"),
    MatDataset("sunrgbd", "sunrgbd", 38, 0, "gen_class_info_sunrgbd.m: void (0) first, then 1..37"),
    MatDataset("ade", "ade20k", 151, 0, "gen_class_info_ade.m: void (0) first, then 1..150"),
)


def dataset_for(path: Path, channels: int, name: str | None) -> MatDataset:
    """The release dataset of a file: `name` if given, else the one with `channels` outputs, checked
    against the file name (`refinenet_res101_voc2012.mat`) when it names one."""
    by_token = {d.token: d for d in MAT_DATASETS}
    by_refine = {d.refine_dataset: d for d in MAT_DATASETS}
    if name is not None:
        chosen = by_token.get(name) or by_refine.get(name)
        if chosen is None:
            known = ", ".join(d.refine_dataset for d in MAT_DATASETS)
            raise RefineError(f"unknown --dataset {name!r}", hint=f"the release has: {known}")
        if chosen.channels != channels:
            raise RefineError(
                f"{path.name} has {channels} classifier outputs, but a {chosen.refine_dataset} model has "
                f"{chosen.channels}", hint="drop --dataset (the outputs tell the dataset) or give the right one"
            )  # fmt: skip
        return chosen
    matches = [d for d in MAT_DATASETS if d.channels == channels]
    if not matches:
        known = ", ".join(f"{d.refine_dataset} {d.channels}" for d in MAT_DATASETS)
        raise RefineError(
            f"{path.name} has {channels} classifier outputs, which no released RefineNet model has ({known})",
            hint="refine imports the seven released models; a model trained on other data has no class table here",
        )
    chosen = matches[0]
    named = [d for d in MAT_DATASETS if re.search(rf"(^|[_\-.]){d.token}([_\-.]|$)", path.name.lower())]
    if named and named[0] is not chosen:
        raise RefineError(
            f"{path.name} is named like a {named[0].refine_dataset} model but has {channels} outputs "
            f"({chosen.refine_dataset})",
            hint="the file may be mislabelled; pass --dataset to say which one it is",
        )
    return chosen


@dataclass
class MatConvNetModel:
    """The weights found in a file: DagNN parameters (MATLAB layout) and the classifier."""

    params: dict[str, np.ndarray]
    filters: np.ndarray  # 3 x 3 x C x K
    biases: np.ndarray  # K
    structs: list[str] = field(default_factory=list)  # where the DagNN structs were found


def _dagnn_params(file: object, path: str, group: object, into: dict[str, np.ndarray]) -> None:
    """Add one DagNN struct's params (name -> value) to `into`; a name seen twice is refused."""
    params = group["params"]  # type: ignore[index]
    if matfile.matlab_class(params) != "struct" or not {"name", "value"} <= set(params.keys()):
        raise RefineError(f"{path}/params is not a DagNN parameter list (fields name, value)")
    names = matfile.elements(file, params["name"], f"{path}/params.name")
    values = matfile.elements(file, params["value"], f"{path}/params.value")
    if len(names) != len(values):
        raise RefineError(f"{path}/params has {len(names)} names but {len(values)} values: the file is damaged")
    for index, (name_node, value_node) in enumerate(zip(names, values, strict=True)):
        name = matfile.read_string(name_node, f"{path}/params({index + 1}).name")
        if name in into:
            raise RefineError(
                f"parameter {name} appears in two networks of the file (a 2-scale model?)",
                hint="refine imports the single-scale models of the release",
            )
        value = matfile.read_numeric(value_node, f"parameter {name}")
        if not np.isfinite(value).all():
            raise RefineError(f"parameter {name} holds NaN or infinite values: the file is damaged")
        into[name] = value


def _classifier(structs: list[tuple[str, object, set[str]]], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The one SimpleNN conv layer with filters and biases (the loss group's classifier)."""
    found = []
    for where, group, fields in structs:
        if not CLASSIFIER_FIELDS <= fields:
            continue
        kind = matfile.read_string(group["type"], f"{where}.type") if "type" in fields else "conv"  # type: ignore[index]
        if kind == "conv":
            found.append((where, group))
    if len(found) != 1:
        raise RefineError(
            f"{path} has {len(found)} classifier layers (structs with filters and biases); expected exactly one",
            hint="is this a model file of the RefineNet release?",
        )
    where, group = found[0]
    filters = matfile.read_numeric(group["filters"], f"{where}.filters")
    biases = matfile.read_numeric(group["biases"], f"{where}.biases").reshape(-1)
    if filters.ndim != 4 or filters.shape[:2] != (3, 3) or filters.shape[3] != biases.size:
        raise RefineError(
            f"the classifier's filters are {'x'.join(map(str, filters.shape))} with {biases.size} biases; "
            "the release's are 3x3xCxK with K biases",
            hint="the file is damaged or not a RefineNet model",
        )
    return filters, biases


def read_matconvnet(path: str | Path) -> MatConvNetModel:
    """Every DagNN parameter and the classifier of a MatConvNet RefineNet file; RefineError otherwise."""
    path = Path(path)
    hint = (
        "give a refinenet_res*.mat model file of the release (MATLAB v7.3, HDF5); an older MAT-file can be "
        "re-saved in MATLAB with save(FILE, 'net_config', '-v7.3')"
    )
    with matfile.open_mat73(path, "MatConvNet model", hint) as file:
        structs = matfile.struct_groups(file)
        dags = [(where, group) for where, group, fields in structs if DAGNN_FIELDS <= fields]
        if not dags:
            raise RefineError(
                f"{path} holds no MatConvNet network (no struct with fields vars, params, layers); "
                f"its variables: {matfile.summary(file)}",
                hint="give a refinenet_res*.mat model file of the RefineNet release",
            )
        params: dict[str, np.ndarray] = {}
        for where, group in dags:
            _dagnn_params(file, where, group, params)
        filters, biases = _classifier(structs, path)
    total = sum(v.size for v in params.values()) + filters.size
    if total > MAX_TOTAL_VALUES:
        raise RefineError(f"{path} holds {total:,} weights; the largest RefineNet has about 134 million")
    return MatConvNetModel(params, filters, biases, [where for where, _ in dags])


@dataclass(frozen=True)
class Layout:
    """The architecture a file's parameter names describe."""

    depth: int
    blocks: dict[int, list[str]]  # stage 2..5 -> block names in order (a, b, c or a, b1, b2 ...)
    adapt_prefix: str
    input_tag: str  # p_ims1d2
    input_scale: float
    crp_order: str  # "pool-conv" (original) or "conv-pool" (improved)
    crp_stages: int
    conv1_bias: bool

    def describe(self) -> str:
        return (
            f"ResNet-{self.depth} (Caffe strides), {self.adapt_prefix}{{k}} names, "
            f"{'improved' if self.crp_order == 'conv-pool' else 'original'} CRP ({self.crp_order}, "
            f"{self.crp_stages} stages), input x{self.input_scale:g}"
        )


def _block_sort_key(name: str) -> tuple[int, int]:
    return (ord(name[0]), int(name[1:]) if len(name) > 1 else 0)


def _resnet_blocks(names: set[str]) -> tuple[int, dict[int, list[str]]]:
    blocks: dict[int, list[str]] = {stage: [] for stage in range(2, 6)}
    for name in names:
        match = _BLOCK_RE.match(name)
        if match:
            blocks[int(match.group(1))].append(match.group(2))
    for stage in blocks:
        blocks[stage].sort(key=_block_sort_key)
    counts = tuple(len(blocks[stage]) for stage in range(2, 6))
    depth = RESNET_BLOCKS.get(counts)  # type: ignore[call-overload]
    if depth is None:
        raise RefineError(
            f"the file's ResNet has {counts} blocks per stage (res2..res5), not ResNet-50/101/152's",
            hint="is this a model file of the RefineNet release?",
        )
    return depth, blocks


def _input_tag(names: set[str]) -> tuple[str, float]:
    tags = {}
    for name in names:
        match = _INPUT_RE.match(name)
        if match:
            tags.setdefault(f"p_ims{match.group(1)}d{match.group(2)}", set()).add(int(match.group(3)))
    if len(tags) != 1 or next(iter(tags.values())) != set(range(1, LEVELS + 1)):
        seen = ", ".join(f"{tag}_outl{sorted(levels)}" for tag, levels in sorted(tags.items())) or "none"
        raise RefineError(
            f"expected the lateral convs p_ims<scale>_outl1..4_dimred of one input scale, found {seen}",
            hint="refine imports the single-scale 4-cascade models of the release",
        )
    tag = next(iter(tags))
    return tag, float(tag.removeprefix("p_ims").replace("d", "."))


def _crp_layout(names: set[str]) -> tuple[str, int]:
    orders = set()
    for level in range(1, LEVELS + 1):
        prefix = f"mflow_conv_g{level}"
        if f"{prefix}_poolprev_relu_varout_pb1_filter" in names:
            stages = 1
            while f"{prefix}_pool{stages}_outvar_pb{stages + 1}_filter" in names:
                stages += 1
            orders.add(("conv-pool", stages))
        elif f"{prefix}_pool1_outvar_dimred_filter" in names:
            stages = 0
            while f"{prefix}_pool{stages + 1}_outvar_dimred_filter" in names:
                stages += 1
            orders.add(("pool-conv", stages))
        else:
            raise RefineError(
                f"no chained residual pooling convs for {prefix} (neither _pool1_outvar_dimred nor "
                "_poolprev_relu_varout_pb1)",
                hint="is this a 4-cascade RefineNet of the release?",
            )
    if len(orders) != 1:
        raise RefineError(f"the four RefineNet blocks disagree on their pooling chain: {sorted(orders)}")
    return next(iter(orders))


def detect_layout(names: set[str]) -> Layout:
    """The architecture from parameter names; RefineError for a layout refine cannot rebuild."""
    depth, blocks = _resnet_blocks(names)
    prefixes = [p for p in ADAPT_PREFIXES if any(n.startswith(f"{p}1_") for n in names)]
    if len(prefixes) != 1:
        raise RefineError(
            f"expected the input paths named adapt_input_path{{k}} or adapt_stage{{k}}, found {prefixes or 'none'}",
            hint="is this a RefineNet model file of the release?",
        )
    if any(n.startswith(f"mflow_conv_g{LEVELS + 1}_") for n in names):
        raise RefineError("the file has more than four RefineNet blocks", hint="refine imports the 4-cascade models")
    tag, scale = _input_tag(names)
    order, stages = _crp_layout(names)
    if not 1 <= stages <= 8:
        raise RefineError(f"{stages} pooling stages per block; refine builds 1 to 8")
    return Layout(depth, blocks, prefixes[0], tag, scale, order, stages, "conv1_bias" in names)


__all__ = ["MAT_DATASETS", "Layout", "MatConvNetModel", "MatDataset", "dataset_for", "detect_layout", "read_matconvnet"]
