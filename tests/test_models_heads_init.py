"""Init schemes of heads (reid.models.heads.init): each scheme's rules measured on large layers, the
default scheme leaves every head as it was, unknown names are ConfigErrors with a suggestion."""
from __future__ import annotations

import pytest
import torch

from reid.models.heads import BNNeckHead, ConvReductionHead, IdentityHead, ReductionHead, init_scheme
from reid.registry import ConfigError

C, D, N = 2048, 256, 751  # input channels, reduction width, classes


def std(t: torch.Tensor) -> float:
    return float(t.detach().std())


@pytest.mark.parametrize("name", ["mgn", "bdb", "lagnet"])
def test_released_schemes_on_a_conv_reduction_head(name):
    torch.manual_seed(0)
    head = ConvReductionHead(C, N, D, init=name)
    assert std(head.reduction[0].weight) == pytest.approx((2 / C) ** 0.5, rel=0.03)  # kaiming fan_in
    bn = head.reduction[1]
    assert float(bn.weight.detach().mean()) == pytest.approx(1.0, abs=0.005)
    assert std(bn.weight) == pytest.approx(0.02, rel=0.15) and bool((bn.bias == 0).all())
    classifier_std = 0.001 if name == "lagnet" else (2 / N) ** 0.5  # N(0, 0.001) | kaiming fan_out
    assert std(head.classifier.weight) == pytest.approx(classifier_std, rel=0.03)
    assert bool((head.classifier.bias == 0).all())


def test_linear_embeddings_use_fan_out_under_every_released_scheme():
    torch.manual_seed(0)
    for name in ("mgn", "bdb", "lagnet"):
        head = ReductionHead(C, N, 1024, init=name)
        assert std(head.reduction[0].weight) == pytest.approx((2 / 1024) ** 0.5, rel=0.03)


def test_default_scheme_keeps_each_heads_own_init():
    torch.manual_seed(0)
    conv = ConvReductionHead(C, N, D)
    assert std(conv.reduction[0].weight) == pytest.approx((2 / D) ** 0.5, rel=0.03)  # fan_out
    assert bool((conv.reduction[1].weight == 1).all())
    assert std(conv.classifier.weight) == pytest.approx(0.001, rel=0.03)
    neck = BNNeckHead(C, N)
    assert bool((neck.bn.weight == 1).all()) and std(neck.classifier.weight) == pytest.approx(0.001, rel=0.03)
    laga = ReductionHead(C, N, 1024)
    assert std(laga.reduction[1].weight) == pytest.approx(0.02, rel=0.15)  # init_laga: BN1d N(1, 0.02)
    assert std(IdentityHead(C, N).classifier.weight) == pytest.approx(0.001, rel=0.03)
    assert std(IdentityHead(C, N, init="bdb").classifier.weight) == pytest.approx((2 / N) ** 0.5, rel=0.03)


def test_scheme_names_are_validated():
    assert init_scheme("default") is None and init_scheme("bdb").blocks == "torch"
    with pytest.raises(ConfigError, match="did you mean 'mgn'"):
        init_scheme("mgm", "model.init")
    with pytest.raises(ConfigError, match="unknown init scheme"):
        BNNeckHead(8, 3, init="xavier")
