"""The model catalogue behind `refine models`: every registered model and peer with its size and cost."""

from __future__ import annotations

import re
from typing import Any

from refine_cli.engine.bench.complexity import MAC_UNIT_NOTE, measure

# A few words per kind of model, for `refine models` in a narrow terminal (the description has the rest)
_SUMMARIES = {
    "lw": "Light-Weight, BMVC 2018",
    "cascade4": "4-cascade, CVPR 2017",
    "cascade2": "2-cascade (paper 4.3)",
    "single": "single block (paper 4.3)",
    "2scale": "2-scale (paper 4.3)",
}


def describe_models(height: int = 512, width: int = 512, num_classes: int = 21) -> list[dict[str, Any]]:
    """One row per registered model, then the torchvision peers: params and GMACs at height x width."""
    from refine_cli.models import create_model, list_models, model_info
    from refine_cli.models.registry import is_peer

    rows = []
    names = sorted(list_models(), key=_natural_key) + [n for n in list_models(include_peers=True) if is_peer(n)]
    for name in names:
        info = model_info(name)
        cost = measure(lambda name=name: create_model(name, num_classes=num_classes), height, width)
        rows.append(_row(name, info.family, info.backbone, info.variant, info.description, is_peer(name), cost))
    for row in rows:
        row.update({"num_classes": num_classes, "size": [height, width], "mac_unit": MAC_UNIT_NOTE})
    return rows


def _natural_key(name: str) -> list[Any]:
    """lw-refinenet-50 before lw-refinenet-101; LW models before the original RefineNet."""
    return [not name.startswith("lw-")] + [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _row(name: str, family: str, backbone: str, variant: str, description: str, peer: bool, cost) -> dict[str, Any]:
    return {
        "name": name,
        "family": family,
        "backbone": backbone,
        "variant": variant,
        "peer": peer,
        "params": cost.params,
        "gmacs": round(cost.gmacs, 3),
        "description": description,
        "summary": f"peer: {description.split(',')[0]}" if peer else _SUMMARIES.get(variant, description),
    }
