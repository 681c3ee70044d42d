"""BDB (Batch DropBlock network): outputs, one band dropped for the whole batch in training only,
the released code's heads, init and learning-rate steps, every configs/bdb config's recipe (the
step and learning checks shared by every family: test_networks_common.py)."""
from __future__ import annotations

import pytest
import torch
from nettools import R18, ROOT, batch_of, config_files, config_id, load

from reid.engine.schedule import lr_factor
from reid.models import build_model
from reid.models.heads import BNNeckHead, IdentityHead
from reid.registry import ConfigError

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
    # the release: a plain Linear classifier (with bias) on the reduced features, which are also
    # the triplet and test features
    assert all(isinstance(h, IdentityHead) and h.classifier.bias is not None for h in model.heads)
    with torch.no_grad():
        f = model.backbone(x)
        g = model.global_reduction(f.mean(dim=(2, 3), keepdim=True)).flatten(1)
        d = model.drop_reduction(model.bottleneck(f).amax(dim=(2, 3)))
    torch.testing.assert_close(ev["features"], torch.cat([g, d], dim=1))
    neck = build_model({"name": NET, "backbone": R18, "neck": "bnneck"}, 5)
    assert all(isinstance(h, BNNeckHead) for h in neck.heads)
    with pytest.raises(ConfigError, match="did you mean 'bnneck'"):
        build_model({"name": NET, "backbone": R18, "neck": "bneck"}, 5)


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


def std_of(*tensors) -> float:
    return float(torch.cat([t.detach().flatten() for t in tensors]).std())


def test_resnet50_branch_sizes_and_released_init():
    """Release (networks.py weights_init_kaiming): global Conv1x1 kaiming fan_in, drop Linear and both
    classifiers kaiming fan_out, BN weights N(1, 0.02); the extra Bottleneck keeps PyTorch's defaults
    (kaiming_uniform a=sqrt(5): std 1 / sqrt(3 fan_in)); the band is 0.33 of the height, full width."""
    torch.manual_seed(0)
    model = build_model({"name": NET, "backbone": {"name": "resnet50", "last_stride": 1}}, 751)
    assert model.bottleneck.conv3.out_channels == 2048 and model.feature_dim == 1536
    assert (model.batch_drop.height_ratio, model.batch_drop.width_ratio) == (0.33, 1.0)
    assert model.global_reduction[0].weight.shape == (512, 2048, 1, 1)
    assert std_of(model.global_reduction[0].weight) == pytest.approx((2 / 2048) ** 0.5, rel=0.03)
    assert model.drop_reduction[0].weight.shape == (1024, 2048)
    assert std_of(model.drop_reduction[0].weight) == pytest.approx((2 / 1024) ** 0.5, rel=0.03)
    classifiers = [h.classifier.weight for h in model.heads]
    assert std_of(*classifiers) == pytest.approx((2 / 751) ** 0.5, rel=0.03)  # about 0.052
    assert all(bool((h.classifier.bias == 0).all()) for h in model.heads)
    bn = std_of(model.global_reduction[1].weight, model.drop_reduction[1].weight)
    assert bn == pytest.approx(0.02, rel=0.15)
    assert std_of(model.bottleneck.conv2.weight) == pytest.approx((1 / (3 * 512 * 9)) ** 0.5, rel=0.03)
    assert bool((model.bottleneck.bn3.weight == 1).all())


def test_default_init_switch():
    torch.manual_seed(0)
    model = build_model({"name": NET, "backbone": R18, "init": "default"}, 751)
    assert std_of(model.global_reduction[0].weight) == pytest.approx((2 / 512) ** 0.5, rel=0.03)  # fan_out
    assert std_of(*(h.classifier.weight for h in model.heads)) == pytest.approx(0.001, rel=0.03)
    assert bool((model.drop_reduction[1].weight == 1).all())
    assert std_of(model.bottleneck.conv2.weight) == pytest.approx((2 / (128 * 9)) ** 0.5, rel=0.03)


def released_lr(epoch: int) -> float:
    """main_reid.py: ``adjust_lr(optimizer, epoch + 1)`` before each 0-based epoch."""
    ep = epoch + 1
    if ep < 50:
        return 1e-4 * (ep // 5 + 1)
    return 1e-3 if ep < 200 else 1e-4 if ep < 300 else 1e-5


def test_schedule_is_the_released_adjust_lr():
    cfg = load(ROOT / "configs" / NET / "market1501.yaml")
    base = float(cfg.optimizer.lr)

    def lr(e):
        return base * lr_factor(e, cfg.schedule, base, cfg.train.epochs)

    by_hand = {0: 1e-4, 3: 1e-4, 4: 2e-4, 8: 2e-4, 9: 3e-4, 43: 9e-4, 44: 1e-3, 49: 1e-3, 198: 1e-3,
               199: 1e-4, 298: 1e-4, 299: 1e-5, 399: 1e-5}
    for e, want in by_hand.items():
        assert lr(e) == pytest.approx(want, rel=1e-9) and released_lr(e) == pytest.approx(want, rel=1e-9)
    assert [lr(e) for e in range(cfg.train.epochs)] == pytest.approx(
        [released_lr(e) for e in range(cfg.train.epochs)], rel=1e-9)


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_config_recipe(path):
    cfg = load(path)
    assert cfg.model.name == NET and cfg.model.backbone.last_stride == 1 and cfg.input.size == [384, 128]
    assert (cfg.sampler.num_ids, cfg.sampler.num_instances) == (32, 4)
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == pytest.approx(1e-3) and not cfg.optimizer.amsgrad
    assert cfg.schedule.warmup_epochs == 0 and cfg.schedule.milestones[-2:] == [199, 299] and cfg.train.epochs == 400
    assert cfg.losses.triplet.soft_margin and cfg.losses.ce.epsilon == 0.1
    assert (cfg.model.neck, cfg.model.init, cfg.model.height_ratio, cfg.model.width_ratio) == ("none", "bdb", 0.33, 1.0)
    assert (cfg.test.flip, cfg.test.normalize, cfg.test.metric) == (False, False, "sqeuclidean")  # evaluator.py:89-91
