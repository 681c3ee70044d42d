"""Engine parts: learning-rate schedule, optimiser groups, atomic checkpoints."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from reid.config import DEFAULTS, Config
from reid.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from reid.engine.optim import build_optimizer
from reid.engine.schedule import lr_factor, set_lr
from reid.registry import ConfigError

LAGA = {"name": "multistep", "warmup_epochs": 10, "warmup_start_lr": 8e-6, "milestones": [40, 60],
        "gamma": 0.5, "min_lr": 0.0}


def lr(epoch, schedule=LAGA, base=8e-4, epochs=70):
    return base * lr_factor(epoch, schedule, base, epochs)


def test_laganet_schedule_values():
    assert lr(0) == pytest.approx(8e-6)
    assert lr(5) == pytest.approx(8e-6 + (8e-4 - 8e-6) * 5 / 10)
    assert lr(10) == pytest.approx(8e-4) and lr(39) == pytest.approx(8e-4)
    assert lr(40) == pytest.approx(4e-4) and lr(59) == pytest.approx(4e-4)
    assert lr(60) == pytest.approx(2e-4) and lr(69) == pytest.approx(2e-4)


def test_cosine_and_constant():
    cos = dict(LAGA, name="cosine", warmup_epochs=0, min_lr=1e-5)
    assert lr(0, cos) == pytest.approx(8e-4)
    assert lr(35, cos) == pytest.approx(1e-5 + (8e-4 - 1e-5) * 0.5)
    assert lr(70, cos) == pytest.approx(1e-5)
    assert lr(50, dict(LAGA, name="constant")) == pytest.approx(8e-4)
    with pytest.raises(ConfigError, match="did you mean 'cosine'"):
        lr(20, dict(LAGA, name="cosin"))


def test_multistep_factors_give_a_piecewise_constant_schedule():
    """``factors``: factors[k] after k milestones (replacing gamma ** k), e.g. a staircase warmup."""
    steps = dict(LAGA, warmup_epochs=0, milestones=[2, 5, 9], factors=[0.25, 0.5, 1.0, 0.1])
    want = [0.25, 0.25, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1]
    assert [lr_factor(e, steps, 8e-4, 11) for e in range(11)] == want
    with_warmup = dict(steps, warmup_epochs=1, warmup_start_lr=8e-5)
    assert lr_factor(0, with_warmup, 8e-4, 11) == pytest.approx(0.1) and lr_factor(1, with_warmup, 8e-4, 11) == 0.25
    for bad in ({"factors": [1.0, 0.1]}, {"milestones": [5, 2, 9]}):
        with pytest.raises(ConfigError, match="one more entry than the increasing"):
            lr_factor(0, dict(steps, **bad), 8e-4, 11)
    assert DEFAULTS["schedule"]["factors"] == []  # default: gamma ** k as before
    assert lr(40, dict(LAGA, factors=[])) == pytest.approx(4e-4)


class TwoPart(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(4, 4)
        self.head = nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2))

    def param_groups(self):
        return {"backbone": list(self.backbone.parameters()), "new": list(self.head.parameters())}


def optimizer_cfg(**kw):
    return Config.wrap({**DEFAULTS["optimizer"], **kw})


def test_lr_mults_and_weight_decay_groups():
    model = TwoPart()
    opt = build_optimizer(optimizer_cfg(lr=1e-3, lr_mults={"backbone": 0.1}), model)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["backbone"]["lr"] == pytest.approx(1e-4) and groups["new"]["lr"] == pytest.approx(1e-3)
    set_lr(opt, 0.5)
    assert groups["backbone"]["lr"] == pytest.approx(5e-5)
    opt = build_optimizer(optimizer_cfg(bias_weight_decay=False), model)
    no_decay = [g for g in opt.param_groups if g["name"].endswith("no_decay")]
    assert no_decay and all(g["weight_decay"] == 0 and all(p.ndim <= 1 for p in g["params"]) for g in no_decay)
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters()))


def test_unknown_group_and_optimizer_are_errors():
    with pytest.raises(ConfigError, match="did you mean 'backbone'"):
        build_optimizer(optimizer_cfg(lr_mults={"backbon": 0.1}), TwoPart())
    with pytest.raises(ConfigError, match="did you mean 'adam'"):
        build_optimizer(optimizer_cfg(name="adma"), TwoPart())


def test_sgd_and_adamw_build():
    for name in ("sgd", "adamw"):
        opt = build_optimizer(optimizer_cfg(name=name), TwoPart())
        assert opt.__class__.__name__.lower() == name


def test_checkpoint_is_atomic_and_validated(tmp_path):
    path = tmp_path / "ck" / "last.pth"
    save_checkpoint({"model": {"w": torch.ones(2)}, "epoch": 3}, path)
    assert not list(path.parent.glob("*.tmp"))
    assert load_checkpoint(path)["epoch"] == 3
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    torch.save({"w": torch.zeros(1)}, tmp_path / "bare.pth")
    assert "w" in load_checkpoint(tmp_path / "bare.pth")["model"]
