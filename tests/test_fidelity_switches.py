"""The switches issue #20 added to follow the releases, each checked to do what it claims on small
inputs: DataParallel's per-shard BatchNorm (``train.shards``) against a direct per-shard
implementation, BDB's band per shard, BoT's sampler stopping rule, per-stripe normalisation and the
squared Euclidean metric, PCB's shared stripe reduction and stripe dropout, identical starting
reductions (``same_init``), and checkpoint selection by rank-1."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from reid.data.sampler import PKSampler
from reid.evaluation.distance import PreparedGallery, compute_distance
from reid.evaluation.features import normalize_parts
from reid.models.layers import BatchDropBlock
from reid.models.layers.shards import GhostBatchNorm, emulate_data_parallel


def data_parallel_bn(bn: nn.BatchNorm2d, x: torch.Tensor, shards: int) -> torch.Tensor:
    """What nn.DataParallel did, written out: scatter with chunk, one replica per shard whose
    buffers are copies except replica 0's (the module's own), plain BN on each shard."""
    out = []
    for i, piece in enumerate(x.chunk(shards)):
        replica = bn if i == 0 else copy.deepcopy(bn)  # replica 0 shares the module's buffers
        if i:
            replica.weight, replica.bias = bn.weight, bn.bias  # parameters are broadcast (same values)
        out.append(replica(piece))
    return torch.cat(out)


@pytest.mark.parametrize("batch, shards", [(8, 2), (5, 2), (12, 4), (6, 1)])
def test_ghost_batchnorm_is_data_parallel_batchnorm(batch, shards):
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(3)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    ghost = emulate_data_parallel(copy.deepcopy(ref), shards)
    assert isinstance(ghost, GhostBatchNorm) and ghost.shards == shards
    x = torch.randn(batch, 3, 4, 2) * 3 + 1
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    for _ in range(2):  # running statistics over two steps
        want, got = data_parallel_bn(ref, xa, shards), ghost(xb)
    torch.testing.assert_close(got, want)
    (want * torch.arange(want.numel()).view_as(want)).sum().backward()
    (got * torch.arange(got.numel()).view_as(got)).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad)
    torch.testing.assert_close(ghost.weight.grad, ref.weight.grad)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ghost, name), getattr(ref, name))
    if shards > 1:  # only shard 0 reached the running statistics: not those of the whole batch
        whole = nn.BatchNorm2d(3)
        whole(x)
        assert not torch.allclose(whole.running_mean, ghost.running_mean)
        first = nn.BatchNorm2d(3)
        first(x.chunk(shards)[0])
        first(x.chunk(shards)[0])
        torch.testing.assert_close(ghost.running_mean, first.running_mean)
    ghost.eval(), ref.eval()
    torch.testing.assert_close(ghost(x), ref(x))


def test_emulation_keeps_parameters_state_keys_and_sets_shards_on_drop_layers():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Flatten(), nn.BatchNorm1d(4 * 4))
    drop = BatchDropBlock(4)
    model.add_module("drop", drop)
    keys, weight = list(model.state_dict()), model[1].weight
    out = emulate_data_parallel(model, 4)
    assert list(out.state_dict()) == keys and out[1].weight is weight
    assert isinstance(out[3], GhostBatchNorm) and drop.shards == 4
    with pytest.raises(ValueError, match="train.shards"):
        emulate_data_parallel(model, 0)


def test_bdb_drops_one_band_per_shard():
    drop = BatchDropBlock(2, height_ratio=0.25).train()
    drop.set_shards(4)
    g = torch.Generator().manual_seed(3)
    out = drop(torch.ones(8, 2, 16, 4), generator=g)
    rows = [tuple(torch.nonzero(out[i, 0, :, 0] == 0).flatten().tolist()) for i in range(8)]
    assert all(len(r) == 4 for r in rows)  # round(0.25 * 16) rows, full width, each sample
    assert all(rows[2 * s] == rows[2 * s + 1] for s in range(4))  # one band per shard of 2
    assert len({rows[2 * s] for s in range(4)}) > 1  # drawn per shard
    drop.set_shards(1)
    out = drop(torch.ones(8, 2, 16, 4), generator=g)
    assert len({tuple(torch.nonzero(out[i, 0, :, 0] == 0).flatten().tolist()) for i in range(8)}) == 1


def test_sampler_stop_rule_ends_the_epoch_when_fewer_than_p_identities_have_chunks():
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(30), rng.integers(1, 14, size=30))
    top_up = PKSampler(pids, 4, 2, exhausted="top_up")
    stop = PKSampler(pids, 4, 2, exhausted="stop")
    for epoch in range(3):
        stop.set_epoch(epoch)
        batches = stop.batches()
        used = np.concatenate(batches)
        # no identity tops up a batch: every chunk is a fresh one, so no image is taken twice
        # (identities with fewer than K images are sampled with replacement inside their one chunk)
        big = np.isin(used, np.flatnonzero(np.bincount(pids)[pids] >= 2))
        assert len(np.unique(used[big])) == big.sum()
        assert all(len(set(pids[b])) == 4 for b in batches)
        assert len(stop) == len(batches) <= len(top_up)
    with pytest.raises(ValueError, match="sampler.exhausted"):
        PKSampler(pids, 4, 2, exhausted="never")


def test_bot_stop_rule_gives_the_release_batches_per_market_epoch(market_mini):
    """The mini set holds every image of Market-1501's training split (re-split into three folders):
    its identity structure gives the release's 182-184 batches per epoch (185 topped up)."""
    pids = [int(f.name[:4]) for d in ("bounding_box_train", "query", "bounding_box_test")
            for f in (market_mini / "Market-1501-v15.09.15" / d).glob("*.jpg")]
    assert len(pids) == 12936 and len(set(pids)) == 751
    sampler = PKSampler(pids, 16, 4, exhausted="stop")
    counts = {len(sampler.batches(e)) for e in range(4)}
    assert counts <= {182, 183, 184} and len(PKSampler(pids, 16, 4)) == 185


def test_norm_parts_and_squared_euclidean():
    f = torch.randn(5, 12)
    n = normalize_parts(f, 3)
    torch.testing.assert_close(n.view(5, 3, 4).norm(dim=2), torch.ones(5, 3))
    torch.testing.assert_close(n[:, 4:8], torch.nn.functional.normalize(f[:, 4:8], dim=1))
    with pytest.raises(ValueError, match="norm_parts"):
        normalize_parts(f, 5)
    q, g = torch.randn(4, 6), torch.randn(7, 6)
    d2 = compute_distance(q, g, "sqeuclidean")
    torch.testing.assert_close(d2, torch.cdist(q, g) ** 2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(PreparedGallery(g, "sqeuclidean")(q), d2)


def pcb_section(**branch) -> dict:
    return {"name": "multibranch", "backbone": {"name": "resnet18", "last_stride": 1, "pretrained": False},
            "trunk": "layer4", "branches": [{"name": "part", "global_feature": False, "stripes": 6, "head_dim": 8,
                                             "head": "conv_reduction", "triplet": False, "stripe_triplet": False,
                                             **branch}]}


def test_pcb_shared_reduction_is_one_conv_and_bn_over_the_stripe_map():
    """The release: one 1x1 conv and one BatchNorm2d on the [B, C, 6, 1] stripe map, a classifier per stripe."""
    from reid.models import build_model

    torch.manual_seed(0)
    model = build_model(pcb_section(shared_reduction=True), 5, input_size=(96, 32)).train()
    heads = model.branches[0].heads
    assert all(h.reduction is heads[0].reduction for h in heads)
    assert len({id(h.classifier) for h in heads}) == 6
    counted_per_head = sum(p.numel() for h in heads for p in h.parameters())
    unique = sum(p.numel() for p in model.branches[0].heads.parameters())  # parameters() lists a module once
    assert counted_per_head - unique == 5 * sum(p.numel() for p in heads[0].reduction.parameters())
    x = torch.randn(4, 3, 96, 32)
    fmap = model.branches[0].feature_map(model.trunk(x))
    stripes = fmap.view(4, fmap.shape[1], 6, -1, fmap.shape[3]).mean(dim=(3, 4))[..., None]  # [B, C, 6, 1]
    ref = copy.deepcopy(heads[0].reduction)
    want = ref(stripes)  # conv + BN2d + ReLU over the map: statistics over B x 6
    logits = model(x)["logits"]
    for k, head in enumerate(heads):
        torch.testing.assert_close(logits[k], head.classifier(want[:, :, k, 0]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(heads[0].reduction[1].running_mean, ref[1].running_mean)
    with pytest.raises(Exception, match="shared_reduction"):
        build_model(pcb_section(shared_reduction=True, stripes=1), 5, input_size=(96, 32))


def test_pcb_stripe_dropout_acts_in_training_only():
    from reid.models import build_model

    torch.manual_seed(0)
    model = build_model(pcb_section(head={"name": "conv_reduction", "input_dropout": 0.5}), 5, input_size=(96, 32))
    head = model.branches[0].heads[0]
    x = torch.rand(6, 512)
    head.train()
    torch.manual_seed(1)
    a = head.reduce(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, head.reduce(x))  # different dropout masks
    head.eval()
    torch.testing.assert_close(head.reduce(x), head.reduction(x[:, :, None, None]).flatten(1))


def test_lagnet_same_init_gives_identical_reductions():
    from reid.models import build_model

    section = {"name": "lagnet", "backbone": {"name": "resnet18", "last_stride": 1, "pretrained": False},
               "num_parts": 4, "embed_dim": 16, "triplet_dim": 8}
    for same in (True, False):
        torch.manual_seed(0)
        model = build_model({**section, "same_init": same}, 5, input_size=(64, 32))
        first, *others = [r.state_dict() for r in model.reductions.values()]
        equal = all(torch.equal(first[k], o[k]) for o in others for k in first)
        assert equal is same and len(others) == 3


def test_select_metric_rank1_keeps_the_best_rank1_not_the_best_map():
    from reid.engine.hooks import BestModel, EpochStats, Evaluation

    for metric, best_epoch in (("rank1", 2), ("mAP", 3)):
        results = iter([{"rank1": 0.90, "mAP": 0.80}, {"rank1": 0.95, "mAP": 0.70}, {"rank1": 0.93, "mAP": 0.85}])
        saved = []
        cfg = SimpleNamespace(train=SimpleNamespace(eval_period=1, epochs=3, select_on="test", select_metric=metric,
                                                    eval_before=False))
        stats_of = [EpochStats(epoch=e, iters=1, lr=0.1) for e in range(3)]
        t = SimpleNamespace(cfg=cfg, fitting=True, val_evaluator=None, history=[], best={"mAP": -1.0, "epoch": -1},
                            evaluate=lambda *a, _r=results, **k: next(_r),
                            save=lambda tag, epoch, _s=saved: _s.append(epoch))
        evaluation, best = Evaluation(), BestModel()
        evaluation.trainer = best.trainer = t
        for stats in stats_of:
            evaluation.after_epoch(stats)
            best.after_epoch(stats)
        assert t.best["epoch"] == best_epoch and t.best["selected_by"] == metric


def test_exported_graph_normalises_per_part_as_the_evaluator():
    from reid.inference.export import FeatureGraph

    class Features(nn.Module):
        def forward(self, x):
            return {"features": x.flatten(1)}

    x = torch.randn(2, 3, 2, 2)
    graph = FeatureGraph(Features(), normalize=True, norm_parts=3)
    torch.testing.assert_close(graph(x), normalize_parts(x.flatten(1), 3))
