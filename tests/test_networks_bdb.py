"""BDB (Batch DropBlock network): outputs, one band dropped for the whole batch in training only,
every configs/bdb config builds and trains a step at reduced size, the loss goes down."""
from __future__ import annotations

import pytest
import torch
from nettools import R18, ROOT, batch_of, config_files, config_id, load, missing_body_configs, reduced_step, train_steps

from reid.models import build_model
from reid.models.heads import IdentityHead

NET = "bdb"
CONFIGS = config_files(NET)


def test_outputs_train_and_eval():
    torch.manual_seed(0)
    model = build_model({"name": NET, "backbone": R18}, 5)
    x = batch_of()["images"]
    out = model.train()(x)
    assert set(out) == {"logits", "features"}
    assert [t.shape for t in out["logits"]] == [(8, 5), (8, 5)]
    assert [t.shape for t in out["features"]] == [(8, 512), (8, 1024)]
    with torch.no_grad():
        ev = model.eval()(x)
    assert set(ev) == {"features"} and ev["features"].shape == (8, 1536)
    plain = build_model({"name": NET, "backbone": R18, "neck": "none"}, 5)
    assert all(isinstance(h, IdentityHead) for h in plain.heads)


def test_one_band_for_the_whole_batch_in_training_only():
    torch.manual_seed(0)
    model = build_model({"name": NET, "backbone": R18}, 5)
    seen = {}
    model.batch_drop.register_forward_hook(lambda m, args, out: seen.update(inp=args[0], out=out))
    x = torch.rand(4, 3, 96, 32)  # layer4 map 6x2: a band of 2 rows
    model.train()(x)
    inp, out = seen["inp"], seen["out"]
    dropped = (out == 0).all(dim=1).all(dim=-1)  # [B, H]: a whole row zero in every channel
    assert dropped.sum(dim=1).tolist() == [2, 2, 2, 2]
    assert (dropped == dropped[0]).all()  # the same rows for every sample
    kept = ~dropped[0]
    torch.testing.assert_close(out[:, :, kept], inp[:, :, kept])
    model.eval()
    with torch.no_grad():
        model(x)
    torch.testing.assert_close(seen["out"], seen["inp"])


def test_resnet50_branch_sizes():
    model = build_model({"name": NET, "backbone": {"name": "resnet50", "last_stride": 1}}, 751)
    assert model.bottleneck.conv3.out_channels == 2048 and model.batch_drop.height_ratio == pytest.approx(1 / 3)
    assert model.feature_dim == 1536


def test_all_configs_present():
    assert not missing_body_configs(NET)


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_config_builds_and_trains_a_step(path):
    cfg = load(path)
    assert cfg.model.name == NET and cfg.model.backbone.last_stride == 1 and cfg.input.size == [384, 128]
    assert (cfg.sampler.num_ids, cfg.sampler.num_instances) == (32, 4)
    assert cfg.optimizer.lr == pytest.approx(1e-3) and cfg.schedule.milestones == [200, 300]
    assert cfg.schedule.warmup_epochs == 50 and cfg.train.epochs == 400
    assert cfg.losses.triplet.soft_margin and cfg.losses.ce.epsilon == 0.1

    total, parts = reduced_step(path)
    assert set(parts) == {"ce", "triplet"} and torch.isfinite(total)


def test_loss_goes_down_on_a_repeated_batch():
    cfg = load(ROOT / "configs" / NET / "market1501.yaml", "model.backbone={name: resnet18, pretrained: false}")
    values = train_steps(cfg, batch_of(), steps=6)
    assert values[-1] < 0.8 * values[0]
