"""Parameter groups, schedules and the typed config/recipes they come from."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from refine_cli.engine.train.config import TrainConfig, list_recipes, load_recipe, parse_assignment, resolve_config
from refine_cli.engine.train.optim import build_optimizer, build_scheduler
from refine_cli.engine.train.schedules import LrSchedule
from refine_cli.errors import RefineError


class _EncDec(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 4, 3)
        self.decoder = nn.Conv2d(4, 2, 1)

    def encoder_parameters(self):
        return self.encoder.parameters()

    def decoder_parameters(self):
        return self.decoder.parameters()


def test_encoder_and_decoder_groups_use_the_lw_learning_rates() -> None:
    cfg = resolve_config(overrides={"optim.encoder_lr": 5e-4, "optim.decoder_lr_mult": 10})
    optimizer = build_optimizer(_EncDec(), cfg.optim)
    enc, dec = optimizer.param_groups
    assert (enc["name"], dec["name"]) == ("encoder", "decoder")
    assert enc["lr"] == pytest.approx(5e-4) and dec["lr"] == pytest.approx(5e-3)
    assert enc["momentum"] == 0.9 and enc["weight_decay"] == pytest.approx(1e-5)


def test_groups_must_cover_every_trainable_parameter() -> None:
    model = _EncDec()
    model.extra = nn.Linear(2, 2)  # in neither group
    with pytest.raises(ValueError, match="split the trainable parameters"):
        build_optimizer(model, TrainConfig().optim)


def test_multistep_is_the_lw_stage_schedule() -> None:
    schedule = LrSchedule("multistep", 300, milestones=[1 / 3, 2 / 3], factors=[1.0, 0.5, 0.2])
    assert [schedule(s) for s in (0, 99, 100, 199, 200, 299)] == [1.0, 1.0, 0.5, 0.5, 0.2, 0.2]


def test_poly_and_warmup() -> None:
    poly = LrSchedule("poly", 100, power=0.9)
    assert poly(0) == 1.0 and poly(50) == pytest.approx(0.5**0.9) and poly(100) == 0.0
    warm = LrSchedule("constant", 100, warmup_steps=4)
    assert [warm(s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_scheduler_state_survives_a_round_trip() -> None:
    cfg = resolve_config(overrides={"optim.schedule": "poly"})
    optimizer = build_optimizer(_EncDec(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, total_steps=10)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    torch.save(state, buffer := __import__("io").BytesIO())
    buffer.seek(0)
    restored_state = torch.load(buffer, weights_only=True)  # plain types only
    optimizer2 = build_optimizer(_EncDec(), cfg.optim)
    scheduler2 = build_scheduler(optimizer2, cfg.optim, total_steps=10)
    scheduler2.load_state_dict(restored_state)
    assert scheduler2.last_epoch == 4 and scheduler2.get_last_lr() == scheduler.get_last_lr()


def test_every_shipped_recipe_resolves() -> None:
    names = list_recipes()
    assert {"lw-nyud", "lw-voc", "refinenet-voc", "lw-mbv2-voc", "demo-shapes"} <= set(names)
    for name in names:
        cfg = resolve_config(name)
        assert cfg.recipe == name and cfg.description
    nyud = resolve_config("lw-nyud")
    assert (nyud.data.crop, nyud.data.batch, nyud.data.scale_min, nyud.data.scale_max) == (500, 6, 0.5, 2.0)
    assert nyud.optim.encoder_lr == pytest.approx(5e-4) and nyud.train.epochs == 300


def test_overrides_win_and_are_type_checked() -> None:
    cfg = resolve_config("lw-nyud", overrides={"data.batch": "4", "train.iters": 10, "optim.grad_clip": "1.5"})
    assert cfg.data.batch == 4 and cfg.train.iters == 10 and cfg.optim.grad_clip == 1.5
    with pytest.raises(RefineError, match="data.batch must be int"):
        resolve_config(overrides={"data.batch": "four"})
    with pytest.raises(RefineError, match="unknown key 'optim.lr'"):
        resolve_config(overrides={"optim.lr": 1.0})
    with pytest.raises(RefineError, match="unknown recipe 'nope'"):
        load_recipe("nope")
    with pytest.raises(RefineError, match="at least one class a weight above 0"):
        resolve_config(overrides={"train.class_weights": [0.0, 0.0]})  # would train nothing, silently
    assert resolve_config(overrides={"train.class_weights": [0.0, 2.0]}).train.class_weights == [0.0, 2.0]
    with pytest.raises(RefineError, match="one more entry"):
        resolve_config(overrides={"optim.milestones": [0.5]})
    assert parse_assignment("optim.poly_power=1.0") == ("optim.poly_power", 1.0)


def test_a_binary_recipe_file_is_one_line(tmp_path) -> None:
    binary = tmp_path / "best.pt"  # `train --recipe best.pt`: a checkpoint where YAML belongs
    binary.write_bytes(b"PK\x03\x04\x80\xff" * 40)
    with pytest.raises(RefineError, match="not a text"):
        load_recipe(str(binary))


def test_config_yaml_round_trip() -> None:
    cfg = resolve_config("lw-voc", overrides={"data.root": "/data/voc"})
    again = TrainConfig.from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
