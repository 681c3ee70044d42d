"""Checks every network family shares, one parametrised test each: the body data sets' configs are
present, every config's network (ResNet-18 trunk, small images) trains a step with finite losses
under exactly the losses its config names, and each family lowers its loss on a repeated batch.
The family files (test_networks_<family>.py) hold what is specific: shapes, recipes, equations."""
from __future__ import annotations

import pytest
import torch
from nettools import (
    ROOT,
    SIZE,
    batch_of,
    config_files,
    config_id,
    load,
    masked_batch_of,
    missing_body_configs,
    reduced_step,
    train_step,
    trainer_parts,
)

MG_SIZE = (128, 64)  # PCB/MGN/fusion: ResNet-18 layer4 8x4 at stride 1, 4x2 at stride 2
R18_OFF = "model.backbone={name: resnet18, pretrained: false}"
MG_SMALL = ("model.backbone={name: resnet18, last_stride: 1, pretrained: false}",
            f"input.size=[{MG_SIZE[0]},{MG_SIZE[1]}]")

#: family -> (losses every config of it trains, reduced step builds size-dependent layers for the
#: input, batch with masks)
STEP_FAMILIES = {
    "bdb": ({"ce", "triplet"}, False, False),
    "lagnet": ({"ce", "triplet", "attention_reg"}, False, False),
    "mmga": ({"ce", "triplet", "mask"}, False, True),
    "rganet": ({"ce", "triplet"}, True, False),
}
#: family -> (config overrides, batch, input size for size-dependent layers) of the repeated-batch check
LEARN = {
    "bdb": ((R18_OFF,), batch_of, None),
    "lagnet": ((R18_OFF, "optimizer.lr=1e-3"), batch_of, None),
    "mmga": ((R18_OFF, "optimizer.lr=1e-3"), masked_batch_of, None),
    "rganet": ((R18_OFF, f"model.input_size=[{SIZE[0]},{SIZE[1]}]", "optimizer.lr=1e-3"), batch_of, None),
    "pcb": (MG_SMALL, lambda: batch_of(2, 4, MG_SIZE), MG_SIZE),
    "mgn": (MG_SMALL, lambda: batch_of(2, 4, MG_SIZE), MG_SIZE),
    "fusion": (MG_SMALL, lambda: batch_of(2, 4, MG_SIZE), MG_SIZE),
}
STEP_CONFIGS = [p for f in STEP_FAMILIES for p in config_files(f)]


@pytest.mark.parametrize("family", sorted(LEARN))
def test_all_body_configs_present(family):
    assert not missing_body_configs(family)


@pytest.mark.parametrize("path", STEP_CONFIGS, ids=config_id)
def test_config_trains_a_step(path):
    family = path.relative_to(ROOT / "configs").parts[0]
    losses, sized, masked = STEP_FAMILIES[family]
    total, parts = reduced_step(path, sized=sized, batch=masked_batch_of() if masked else None)
    assert set(parts) == losses and torch.isfinite(total)


@pytest.mark.parametrize("family", sorted(LEARN))
def test_loss_goes_down_on_a_repeated_batch(family):
    overrides, make_batch, input_size = LEARN[family]
    cfg = load(ROOT / "configs" / family / "market1501.yaml", *overrides)
    model, losses, optimizer = trainer_parts(cfg, input_size=input_size)
    batch = make_batch()
    values, parts = [], []
    for _ in range(6):
        total, part = train_step(model, losses, optimizer, batch)
        values.append(float(total.detach()))
        parts.append(part)
    assert values[-1] < 0.8 * values[0], values
    if family == "mmga":  # the mask guidance term itself goes down
        assert float(parts[-1]["mask"]) < float(parts[0]["mask"])
