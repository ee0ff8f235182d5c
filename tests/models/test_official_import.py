"""Strict import/export of official checkpoints against every official key listing.

State dicts here are meta tensors with the listed shapes: key/shape logic needs no memory or time.
"""

from __future__ import annotations

import pytest
import torch

from refine_cli.errors import RefineError
from refine_cli.models import create_model
from refine_cli.models.official import (
    SUPPORTED,
    export_official_state_dict,
    import_official_state_dict,
    official_num_classes,
    official_to_ours,
)
from tests.models.listings import listing_names, load_listing

LISTED = listing_names() or ["lw-refinenet-50"]  # a missing folder still yields one (skipped) case


def fake_official(listing: dict[str, list[int]], *, prefix: str = "", batches: bool = True) -> dict[str, torch.Tensor]:
    return {
        prefix + key: torch.empty(shape, device="meta", dtype=torch.long if key.endswith("tracked") else torch.float)
        for key, shape in listing.items()
        if batches or not key.endswith("num_batches_tracked")
    }


def our_keys(name: str, num_classes: int = 21) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", LISTED)
def test_every_official_key_maps_and_covers_ours(name: str) -> None:
    listing, params = load_listing(name)
    ours = our_keys(name)
    mapped = {key: official_to_ours(name, key) for key in listing}
    assert None not in mapped.values(), [k for k, v in mapped.items() if v is None][:5]
    assert set(mapped.values()) == set(ours) and len(set(mapped.values())) == len(listing)
    for theirs, mine in mapped.items():
        assert tuple(listing[theirs]) == ours[mine], theirs
    assert sum(torch.Size(s).numel() for k, s in ours.items() if "running" not in k and "batches" not in k) == params


@pytest.mark.parametrize("name", LISTED)
@pytest.mark.parametrize("prefix", ["", "module."])
@pytest.mark.parametrize("batches", [True, False])
def test_import_is_complete(name: str, prefix: str, batches: bool) -> None:
    listing, _ = load_listing(name)
    result = import_official_state_dict(name, fake_official(listing, prefix=prefix, batches=batches))
    assert list(result) == list(our_keys(name))  # every key, in our model's order
    tracked = [v for k, v in result.items() if k.endswith("num_batches_tracked")]
    assert tracked and all(v.dtype == torch.long for v in tracked)


@pytest.mark.parametrize("name", LISTED)
def test_dropped_and_extra_keys_are_named(name: str) -> None:
    listing, _ = load_listing(name)
    state = fake_official(listing)
    victim = [k for k in listing if not k.endswith("num_batches_tracked")][len(listing) // 2]
    dropped = {k: v for k, v in state.items() if k != victim}
    with pytest.raises(RefineError) as exc:
        import_official_state_dict(name, dropped)
    assert "1 missing" in exc.value.message and victim in exc.value.message
    with pytest.raises(RefineError) as exc:
        import_official_state_dict(name, {**state, "aux_head.weight": torch.empty(3, device="meta")})
    assert "1 unexpected" in exc.value.message and "aux_head.weight" in exc.value.message
    assert "\n" not in exc.value.one_line()


def test_shape_mismatch_and_other_depth_are_rejected() -> None:
    listing, _ = load_listing("lw-refinenet-50")
    state = fake_official(listing)
    state["p_ims1d2_outl2_dimred.weight"] = torch.empty(256, 1000, 1, 1, device="meta")
    with pytest.raises(RefineError, match=r"1 wrong shape \(p_ims1d2_outl2_dimred.weight"):
        import_official_state_dict("lw-refinenet-50", state)
    with pytest.raises(RefineError, match="missing"):  # a ResNet-50 file offered as ResNet-101
        import_official_state_dict("lw-refinenet-101", fake_official(listing))
    with pytest.raises(RefineError, match="missing"):  # LW file offered as the full RefineNet
        import_official_state_dict("refinenet-50", fake_official(listing))


def test_class_count_comes_from_the_classifier() -> None:
    listing, _ = load_listing("lw-refinenet-mobilenetv2")
    listing = {**listing, "segm.weight": [40, 256, 3, 3], "segm.bias": [40]}
    state = fake_official(listing, prefix="module.")
    assert official_num_classes("lw-refinenet-mobilenetv2", state) == 40
    assert import_official_state_dict("lw-refinenet-mobilenetv2", state)["classifier.bias"].shape == (40,)


@pytest.mark.parametrize("name", ["refinenet-50-2scale", "refinenet-101-cascade2", "refinenet-152-single"])
def test_variants_without_official_weights(name: str) -> None:
    assert name not in SUPPORTED
    with pytest.raises(RefineError, match=f"no official checkpoint exists for {name}"):
        import_official_state_dict(name, {})


def test_not_a_state_dict() -> None:
    with pytest.raises(RefineError, match="state_dict"):
        import_official_state_dict("lw-refinenet-50", {"epoch": 3})


@pytest.mark.parametrize("name", SUPPORTED)
def test_export_then_import_round_trips(name: str) -> None:
    ours = our_keys(name, num_classes=7)
    state = {k: torch.empty(s, device="meta") for k, s in ours.items()}
    exported = export_official_state_dict(name, state)
    assert len(exported) == len(ours) and not any(k.startswith(("encoder.", "blocks.")) for k in exported)
    back = import_official_state_dict(name, exported)
    assert list(back) == list(ours) and back["classifier.bias"].shape == (7,)


def test_export_rejects_foreign_keys() -> None:
    with pytest.raises(RefineError, match="no official name"):
        export_official_state_dict("lw-refinenet-50", {"blocks.9.crp.convs.0.weight": torch.empty(1)})
