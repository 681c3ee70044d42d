"""LAG-Net: stream shapes, real part stripes, BA-DropBlock training-only, outputs; the attention
feature regularisation (centre update and loss) against a direct slow implementation; every
configs/lagnet config's recipe (the step and learning checks shared by every family: test_networks_common.py)."""
from __future__ import annotations

import pytest
import torch
from nettools import R18, batch_of, config_files, config_id, load

from reid.losses.attention_reg import AttentionRegLoss
from reid.models import build_model
from reid.models.lag_net import LAGHead, conv_reduction
from reid.registry import ConfigError

NET = "lagnet"
CONFIGS = config_files(NET)


# ----------------------------------------------------------------------------------- network


def test_stream_sizes_at_384x128():
    """Global stream at stride 2 (12x4), part and local-attention streams at stride 1 (24x8)."""
    model = build_model({"name": NET, "backbone": R18}, 5).eval()
    with torch.no_grad():
        t = model.trunk(torch.zeros(1, 3, 384, 128))
        assert t.shape[2:] == (24, 8)
        assert model.global_stream(t).shape[2:] == (12, 4)
        assert model.part_stream(t).shape[2:] == (24, 8) and model.la_stream(t).shape[2:] == (24, 8)


def test_outputs_train_and_eval():
    torch.manual_seed(0)
    model = build_model({"name": NET, "backbone": R18}, 5)
    assert model.head_names == ["la", "d", "gs", "ps", "p0", "p1", "p2"]
    x = batch_of()["images"]
    out = model.train()(x)
    assert set(out) == {"logits", "triplet_features", "head_features", "parts"}
    assert [t.shape for t in out["logits"]] == [(8, 5)] * 7
    assert [t.shape for t in out["head_features"]] == [(8, 512)] * 7
    assert [t.shape[1] for t in out["triplet_features"]] == [256, 256, 256, 256, 512]
    assert out["parts"].shape == (8, 24, 512)
    with torch.no_grad():
        ev = model.eval()(x)
    assert set(ev) == {"features"} and ev["features"].shape == (8, 3584)


def test_part_branch_pools_real_stripes_and_drop_is_training_only():
    torch.manual_seed(0)
    model = build_model({"name": NET, "backbone": R18}, 5).eval()
    x = torch.randn(2, 3, 96, 32)
    with torch.no_grad():
        v, parts = model.pooled(x)
        t = model.trunk(x)
        part = model.part_stream(t)  # [2, 512, 6, 2]: stripes of 2 rows
        for i in range(3):
            band = part[:, :, 2 * i:2 * i + 2]
            torch.testing.assert_close(v[f"p{i}"], band.mean(dim=(2, 3)) + band.amax(dim=(2, 3)))
        assert not torch.allclose(v["p0"], v["p1"])
        f_la = model.la_stream(t)
        torch.testing.assert_close(v["d"], 2 * f_la.amax(dim=(2, 3)))  # test: d = F_la
        las = model.las(f_la)
        torch.testing.assert_close(v["la"], las.global_feature)
        torch.testing.assert_close(parts, las.parts)
    model.train()
    seen = {}
    model.drop.register_forward_hook(lambda m, args, out: seen.update(inp=args[0], out=out))
    model(x)
    assert (seen["out"] == 0).any() and not torch.equal(seen["out"], seen["inp"])


def test_fifth_triplet_input_is_the_part_head_feature_by_default():
    """Released code: the fifth triplet term takes the ps head's 512-D BN feature; the three stripe
    reductions (dead there) are not built. ``part_triplet: stripes`` restores the 768-D concatenation."""
    torch.manual_seed(0)
    model = build_model({"name": NET, "backbone": R18}, 5).train()
    assert model.part_triplet == "head" and len(model.stripe_reductions) == 0
    out = model(batch_of()["images"])
    ps = out["head_features"][model.head_names.index("ps")]
    assert out["triplet_features"][4].shape == (8, 512) and torch.equal(out["triplet_features"][4], ps)

    torch.manual_seed(0)
    model = build_model({"name": NET, "backbone": R18, "part_triplet": "stripes"}, 5).train()
    assert len(model.stripe_reductions) == 3
    x = batch_of()["images"]
    fifth = model(x)["triplet_features"][4]
    v, _ = model.pooled(x)  # training-mode BN: batch statistics, as in the forward above
    direct = torch.cat([red(v[f"p{i}"][:, :, None, None]).flatten(1) for i, red in enumerate(model.stripe_reductions)],
                       dim=1)
    assert fifth.shape == (8, 768)
    torch.testing.assert_close(fifth, direct)


def test_release_stripes_are_three_equal_copies_of_the_pooled_part_feature():
    """``stripes_from: pooled`` pools the stripes from the 1x1 g_ps as the release does:
    p0 = p1 = p2 = 2 * g_ps; the default ``map`` pools three different real stripes."""
    torch.manual_seed(0)
    model = build_model({"name": NET, "backbone": R18, "stripes_from": "pooled"}, 5).eval()
    x = torch.randn(2, 3, 96, 32)
    with torch.no_grad():
        v, _ = model.pooled(x)
        part = model.part_stream(model.trunk(x))
    g_ps = part.mean(dim=(2, 3)) + part.amax(dim=(2, 3))
    torch.testing.assert_close(v["ps"], g_ps)
    for i in range(3):
        torch.testing.assert_close(v[f"p{i}"], 2 * g_ps)
    model.stripes_from = "map"
    with torch.no_grad():
        v, _ = model.pooled(x)
    assert not torch.allclose(v["p0"], v["p1"]) and not torch.allclose(v["p1"], v["p2"])


def test_choices_are_validated():
    with pytest.raises(ConfigError, match="did you mean 'head'"):
        build_model({"name": NET, "backbone": R18, "part_triplet": "heads"}, 5)
    with pytest.raises(ConfigError, match="did you mean 'pooled'"):
        build_model({"name": NET, "backbone": R18, "stripes_from": "pool"}, 5)
    with pytest.raises(ConfigError, match="did you mean 'lagnet'"):
        build_model({"name": NET, "backbone": R18, "init": "lagnt"}, 5)


def std_of(tensors) -> float:
    return float(torch.cat([t.detach().flatten() for t in tensors]).std())


def test_init_as_released_and_default():
    """init lagnet (release): reduction convs kaiming fan_in, head and reduction BN weights N(1, 0.02),
    embedding Linear fan_out, classifier N(0, 0.001); init default: conv fan_out, BN weights 1."""
    torch.manual_seed(0)
    released = build_model({"name": NET, "backbone": R18}, 751)
    c, t = 512, 256  # ResNet-18 channels, triplet width
    default = torch.nn.Module()  # the same pieces under init: default
    default.reductions = torch.nn.ModuleDict({str(i): conv_reduction(c, t) for i in range(4)})
    default.heads = torch.nn.ModuleDict({str(i): LAGHead(c, 751) for i in range(7)})
    for model, conv_std in ((released, (2 / c) ** 0.5), (default, (2 / t) ** 0.5)):
        convs = [r[0].weight for r in model.reductions.values()]
        assert std_of(convs) == pytest.approx(conv_std, rel=0.03)
        linears = [h.embed[2].weight for h in model.heads.values()]
        assert std_of(linears) == pytest.approx((2 / 512) ** 0.5, rel=0.03)  # fan_out = 512 either way
        assert std_of(h.classifier.weight for h in model.heads.values()) == pytest.approx(0.001, rel=0.03)
    bn = [m.weight for m in released.heads.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    bn += [r[1].weight for r in released.reductions.values()]
    assert float(torch.cat([w.detach() for w in bn]).mean()) == pytest.approx(1.0, abs=0.005)
    assert std_of(bn) == pytest.approx(0.02, rel=0.1)
    bn = [m.weight for m in default.heads.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    bn += [r[1].weight for r in default.reductions.values()]
    assert all(bool((w == 1).all()) for w in bn)


def test_las_pooling_option_and_no_drop_branch():
    model = build_model({"name": NET, "backbone": R18, "las_pooling": "mul", "use_drop": False}, 5)
    assert model.las.pooling == "mul" and model.drop is None
    out = model.train()(batch_of()["images"])
    assert len(out["logits"]) == 6 and len(out["triplet_features"]) == 4


# --------------------------------------------------------------------------- attention reg


def slow_attention_reg(parts: torch.Tensor, pids: torch.Tensor, centers: torch.Tensor, alpha: float,
                       update: str) -> tuple[float, torch.Tensor]:
    """Loops over samples: the loss with the centres as given, then the updated centres."""
    b = parts.shape[0]
    fs = []
    for i in range(b):
        x = parts[i].flatten().double()
        x = torch.sign(x) * torch.sqrt(x.abs() + 1e-12)
        fs.append(x / x.norm().clamp(min=1e-12))

    def unit(c):
        return c / c.norm().clamp(min=1e-12)

    loss = sum(float(((fs[i] - unit(centers[pids[i]].double())) ** 2).sum()) for i in range(b)) / b
    new = centers.clone().double()
    for y in pids.unique().tolist():
        idx = [i for i in range(b) if int(pids[i]) == y]
        deltas = [fs[i] - unit(centers[y].double()) for i in idx]
        new[y] += alpha * (sum(deltas) / len(deltas) if update == "mean" else deltas[-1])
    return loss, new


@pytest.mark.parametrize("update", ["mean", "last"])
def test_attention_reg_matches_slow(update):
    g = torch.Generator().manual_seed(1)
    loss_fn = AttentionRegLoss(alpha=0.05, update=update).train()
    pids = torch.tensor([0, 2, 2, 1, 0, 2])
    centers = torch.zeros(4, 3 * 5, dtype=torch.float64)
    for step in range(3):
        parts = torch.randn(6, 3, 5, generator=g, requires_grad=True)
        outputs = {"parts": parts, "logits": [torch.zeros(6, 4)]}
        loss = loss_fn(outputs, {"pids": pids})
        want_loss, centers = slow_attention_reg(parts.detach(), pids, centers, 0.05, update)
        assert float(loss.detach()) == pytest.approx(want_loss, rel=1e-5, abs=1e-6)
        torch.testing.assert_close(loss_fn.centers.double(), centers, rtol=1e-5, atol=1e-6)
        if step == 0:
            assert float(loss.detach()) == pytest.approx(1.0)  # zero centres: ||f||^2 = 1
        loss.backward()
        assert parts.grad is not None and not loss_fn.centers.requires_grad
    assert loss_fn.centers.shape == (4, 15)  # num_classes from the logits width
    restored = AttentionRegLoss()
    restored.load_state_dict(loss_fn.state_dict())  # a checkpointed table loads into a fresh loss
    torch.testing.assert_close(restored.centers, loss_fn.centers)


def test_attention_reg_eval_does_not_update_and_grows_with_pids():
    loss_fn = AttentionRegLoss()
    parts = torch.randn(4, 2, 3)
    loss_fn.train()({"parts": parts}, {"pids": torch.tensor([0, 1, 0, 1])})
    before = loss_fn.centers.clone()
    loss_fn.eval()({"parts": parts}, {"pids": torch.tensor([0, 1, 0, 1])})
    torch.testing.assert_close(loss_fn.centers, before)
    loss_fn.train()({"parts": parts}, {"pids": torch.tensor([0, 5, 0, 1])})
    assert loss_fn.centers.shape == (6, 6)
    torch.testing.assert_close(loss_fn.centers[2:5], torch.zeros(3, 6))


# --------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_config_recipe(path):
    cfg = load(path)
    assert cfg.model.name == NET and cfg.input.size == [384, 128]
    assert (cfg.sampler.num_ids, cfg.sampler.num_instances) == (8, 4)
    assert cfg.optimizer.name == "adam" and cfg.optimizer.amsgrad and cfg.optimizer.lr == pytest.approx(2e-4)
    assert cfg.schedule.milestones == [320, 380, 420] and cfg.schedule.gamma == 0.1 and cfg.train.epochs == 600
    assert cfg.losses.ce.reduce == "mean" and cfg.losses.ce.weight == 1.0
    assert cfg.losses.triplet.reduce == "mean" and cfg.losses.triplet.weight == 2.0
    assert cfg.losses.triplet.margin == 1.2 and cfg.losses.triplet.input == "triplet_features"
    assert cfg.losses.attention_reg.weight == 1.0 and cfg.losses.attention_reg.alpha == 0.05
    assert cfg.test.flip and cfg.test.normalize and cfg.test.metric == "euclidean"
    assert (cfg.model.part_triplet, cfg.model.stripes_from, cfg.model.init) == ("head", "map", "lagnet")
    assert cfg.augment.erasing.prob == 0.5 and cfg.augment.color_jitter.prob == 0.0
