"""Losses: label-smoothed CE, batch-hard triplet (against a slow loop), the loss set."""
from __future__ import annotations

import math

import pytest
import torch

from reid.losses import CrossEntropyLoss, TripletLoss, build_losses
from reid.registry import ConfigError


def test_cross_entropy_with_smoothing_matches_the_formula():
    torch.manual_seed(0)
    logits, pids = torch.randn(5, 4), torch.tensor([0, 3, 1, 1, 2])
    eps = 0.1
    expected = 0.0
    for i in range(5):
        logp = [logits[i, k] - math.log(sum(math.exp(v) for v in logits[i].tolist())) for k in range(4)]
        q = [(1 - eps) * (k == pids[i]) + eps / 4 for k in range(4)]
        expected += -sum(qk * lk for qk, lk in zip(q, logp)) / 5
    loss = CrossEntropyLoss(epsilon=eps)({"logits": logits}, {"pids": pids})
    assert loss.item() == pytest.approx(float(expected), rel=1e-5)
    plain = CrossEntropyLoss(epsilon=0.0)({"logits": logits}, {"pids": pids})
    assert plain.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, pids).item(), rel=1e-6)


def slow_batch_hard(x, pids, margin, soft=False):
    """Loop version: hardest positive and negative per anchor."""
    losses = []
    for a in range(len(x)):
        pos = [torch.dist(x[a], x[p]).item() for p in range(len(x)) if p != a and pids[p] == pids[a]]
        neg = [torch.dist(x[a], x[n]).item() for n in range(len(x)) if pids[n] != pids[a]]
        if not pos or not neg:
            continue
        diff = max(pos) - min(neg)
        losses.append(math.log1p(math.exp(diff)) if soft else max(0.0, diff + margin))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("soft", [False, True])
def test_batch_hard_triplet_matches_a_loop(soft):
    torch.manual_seed(1)
    x = torch.randn(12, 6)
    pids = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    loss = TripletLoss(margin=1.2, soft_margin=soft)({"features": x}, {"pids": pids})
    assert loss.item() == pytest.approx(slow_batch_hard(x, pids, 1.2, soft), rel=1e-4)


def test_triplet_gradient_flows_and_cosine_metric():
    torch.manual_seed(2)
    x = torch.randn(8, 5, requires_grad=True)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    TripletLoss(margin=0.3)({"features": x}, {"pids": pids}).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    y = x.detach() * torch.rand(8, 1) * 5 + 0.0  # cosine distance ignores the scale
    a = TripletLoss(metric="cosine")({"features": x.detach()}, {"pids": pids})
    b = TripletLoss(metric="cosine")({"features": y}, {"pids": pids})
    assert a.item() == pytest.approx(b.item(), rel=1e-4)
    with pytest.raises(ConfigError):
        TripletLoss(metric="manhattan")


def test_list_outputs_are_summed_or_averaged():
    torch.manual_seed(3)
    pids = torch.tensor([0, 0, 1, 1])
    logits = [torch.randn(4, 3) for _ in range(3)]
    single = [CrossEntropyLoss()({"logits": t}, {"pids": pids}) for t in logits]
    assert CrossEntropyLoss(reduce="sum")({"logits": logits}, {"pids": pids}).item() == pytest.approx(
        sum(s.item() for s in single), rel=1e-6)
    assert CrossEntropyLoss(reduce="mean")({"logits": logits}, {"pids": pids}).item() == pytest.approx(
        sum(s.item() for s in single) / 3, rel=1e-6)


def test_loss_set_weights_and_values():
    losses = build_losses({
        "ce": {"name": "cross_entropy", "weight": 1.0, "epsilon": 0.1},
        "tri": {"name": "triplet", "weight": 0.1, "margin": 1.2},
        "gone": None,
    })
    torch.manual_seed(4)
    outputs = {"logits": torch.randn(4, 3, requires_grad=True), "features": torch.randn(4, 5)}
    batch = {"pids": torch.tensor([0, 0, 1, 1])}
    total, parts = losses(outputs, batch)
    assert set(parts) == {"ce", "tri"}
    assert total.item() == pytest.approx(parts["ce"].item() + 0.1 * parts["tri"].item(), rel=1e-6)
    total.backward()
    assert outputs["logits"].grad is not None
    with pytest.raises(ConfigError, match="did you mean 'margin'"):
        build_losses({"tri": {"name": "triplet", "margn": 1.0}})
    with pytest.raises(KeyError, match="no output 'logits'"):
        losses({"features": outputs["features"]}, batch)


def test_float64_outputs_keep_their_precision_and_half_ones_are_raised_to_float32():
    """A float64 run (train.dtype: float64, the parity scripts) is not cut to float32 in the losses:
    CE and triplet equal their float64 formulas to 1e-15; bf16 outputs are computed in float32."""
    torch.manual_seed(0)
    logits, feats = torch.randn(8, 5, dtype=torch.float64), torch.randn(8, 6, dtype=torch.float64)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    ce = CrossEntropyLoss(epsilon=0.1)({"logits": logits}, {"pids": pids})
    logp = torch.log_softmax(logits, dim=1)
    expected = (0.9 * -logp.gather(1, pids[:, None]).squeeze(1) - 0.1 * logp.mean(dim=1)).mean()
    assert ce.dtype == torch.float64 and abs(ce.item() - expected.item()) <= 1e-15 * expected.item()
    tri = TripletLoss(margin=0.3)({"features": feats}, {"pids": pids})
    d = torch.cdist(feats, feats)
    same = pids[:, None] == pids[None, :]
    ap = d.masked_fill(~same, -1).amax(1)
    an = d.masked_fill(same, float("inf")).amin(1)
    assert tri.dtype == torch.float64
    assert tri.item() == pytest.approx((ap - an + 0.3).clamp(min=0).mean().item(), rel=1e-12)
    half = CrossEntropyLoss(epsilon=0.1)({"logits": logits.bfloat16()}, {"pids": pids})
    assert half.dtype == torch.float32
