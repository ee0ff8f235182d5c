"""ResNet encoders (torchvision's, so its ImageNet weights and the official checkpoints' keys fit as-is)
and the strict weight loading shared by every backbone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from refine_cli.errors import RefineError
from refine_cli.models.torchfile import read_torch_file, short_reason

RESNET_DEPTHS = (50, 101, 152)


class ResNetEncoder(nn.Module):
    """A torchvision ResNet without avgpool/fc that returns its four stage outputs [l1, l2, l3, l4].

    Strides 4/8/16/32 with 256/512/1024/2048 channels. In training mode dropout (p=0.5 by default)
    is applied to l3 and l4 after l4 has been computed from the undropped l3, as in the reference
    code; it is a no-op in eval mode.
    """

    channels = (256, 512, 1024, 2048)

    def __init__(self, depth: int, dropout: float = 0.5) -> None:
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"ResNet depth must be one of {RESNET_DEPTHS}, not {depth}")
        import torchvision.models as tvm

        trunk = getattr(tvm, f"resnet{depth}")(weights=None)
        self.depth = depth
        self.conv1, self.bn1, self.relu, self.maxpool = trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        l1 = self.layer1(x)
        l2 = self.layer2(l1)
        l3 = self.layer3(l2)
        l4 = self.layer4(l3)
        return [l1, l2, self.dropout(l3), self.dropout(l4)]


def load_imagenet_resnet(encoder: ResNetEncoder) -> None:
    """Load torchvision's IMAGENET1K_V1 weights (downloaded once into the torch hub cache).

    V1 is the classic 76.1% top-1 ResNet the papers started from.
    """
    import torchvision.models as tvm

    weights = getattr(tvm, f"ResNet{encoder.depth}_Weights").IMAGENET1K_V1
    try:
        state = weights.get_state_dict(progress=True, weights_only=True)
    except Exception as exc:  # network errors, proxies, truncated or hash-mismatched downloads
        raise RefineError(
            f"could not download the ImageNet weights for ResNet-{encoder.depth} from {weights.url}: "
            f"{short_reason(exc)}",
            hint="download that file elsewhere and pass it with --backbone-weights FILE",
        ) from exc
    load_strict(encoder, drop_prefixes(state, ("fc.",)), f"ImageNet ResNet-{encoder.depth} weights")


def read_state_dict(path: str | Path, what: str) -> dict[str, Tensor]:
    """Read a state_dict file safely (weights_only) and unwrap the usual containers and `module.` prefixes."""
    path = Path(path).expanduser()
    obj = read_torch_file(path, what)
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise RefineError(
            f"{path} does not hold a state_dict (a mapping of names to tensors)",
            hint="save weights with torch.save(model.state_dict(), FILE)",
        )
    return strip_module_prefix(obj)


def strip_module_prefix(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Remove the `module.` prefix that (Distributed)DataParallel adds to every key."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def drop_prefixes(state: Mapping[str, Tensor], prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    """Drop keys we deliberately ignore (the ImageNet classifier `fc.*`)."""
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


def describe_mismatch(missing: list[str], unexpected: list[str], wrong_shape: list[str], show: int = 3) -> str | None:
    """One line naming counts and the first few offending keys, or None when everything matches."""
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            more = f", ... (+{len(keys) - show})" if len(keys) > show else ""
            parts.append(f"{len(keys)} {label} ({', '.join(keys[:show])}{more})")
    return "; ".join(parts) or None


def check_keys(
    expected: Mapping[str, tuple[int, ...]], given: Mapping[str, Tensor], ignore_missing: tuple[str, ...] = ()
) -> str | None:
    """Compare a state_dict with the expected key -> shape table; `ignore_missing` suffixes may be absent."""
    missing = [k for k in expected if k not in given and not k.endswith(ignore_missing)]
    unexpected = [k for k in given if k not in expected]
    wrong = [
        f"{k}: {tuple(given[k].shape)} vs {tuple(expected[k])}"
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k])
    ]
    return describe_mismatch(missing, unexpected, wrong)


def load_strict(module: nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    """load_state_dict that fails with a one-line RefineError instead of a wall of text or silent skips.

    BatchNorm `num_batches_tracked` may be absent (many released files lack it); everything else must match.
    """
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    problem = check_keys(expected, state, ignore_missing=("num_batches_tracked",))
    if problem:
        raise RefineError(f"{what} do not fit the model: {problem}", hint="check that the file is for this backbone")
    module.load_state_dict(state, strict=False)


def load_backbone_file(encoder: nn.Module, path: str | Path, what: str) -> None:
    """Load a local backbone state_dict strictly; the ImageNet classifier (`fc.*`) is ignored."""
    state = drop_prefixes(read_state_dict(path, what), ("fc.",))
    load_strict(encoder, state, f"{what} in {Path(path).name}")
