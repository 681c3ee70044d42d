"""Evaluation protocol objects: lookup by name, the rules each named protocol carries."""
from __future__ import annotations

import numpy as np
import pytest

from reid.data import ReidDataset, Sample
from reid.data.protocols import CUHK03, HANDS, MARKET, PROTOCOLS, get_protocol
from reid.evaluation import evaluate_rank
from reid.registry import ConfigError


def test_named_protocols_and_lookup():
    assert PROTOCOLS.names() == ["cuhk03", "hands", "market"]
    assert get_protocol("hands") is HANDS and get_protocol(MARKET) is MARKET
    assert (MARKET.cross_camera, MARKET.single_gallery_shot, MARKET.draws, MARKET.validation) == (True, 0, 1, "market")
    assert (CUHK03.cross_camera, CUHK03.single_gallery_shot, CUHK03.validation) == (True, 10, "market")
    assert (HANDS.cross_camera, HANDS.draws, HANDS.validation) == (False, 10, "hands")
    with pytest.raises(ConfigError, match="unknown evaluation protocol 'hand'; did you mean 'hands'"):
        ReidDataset("toy", [], [Sample("q.jpg", 1, 0)], [Sample("g.jpg", 1, 1)], protocol="hand")
    ds = ReidDataset("toy", [], [], [], protocol=HANDS)
    assert ds.protocol == "hands" and ds.evaluation_protocol is HANDS


def test_protocol_object_and_name_give_the_same_result():
    rng = np.random.default_rng(0)
    dist = rng.random((6, 12))
    qp, gp = rng.integers(0, 3, 6), rng.integers(0, 3, 12)
    qc, gc = rng.integers(0, 2, 6), rng.integers(0, 2, 12)
    for proto in (MARKET, CUHK03, HANDS):
        a = evaluate_rank(dist, qp, gp, qc, gc, max_rank=5, protocol=proto, backend="torch")
        b = evaluate_rank(dist, qp, gp, qc, gc, max_rank=5, protocol=proto.name, backend="torch")
        np.testing.assert_array_equal(a.cmc, b.cmc)
        assert a.mAP == b.mAP and a.protocol == proto.name
    default = evaluate_rank(dist, qp, gp, qc, gc, max_rank=5, protocol="cuhk03", seed=3, backend="torch")
    ten = evaluate_rank(dist, qp, gp, qc, gc, max_rank=5, protocol="cuhk03", seed=3, num_repeats=10, backend="torch")
    four = evaluate_rank(dist, qp, gp, qc, gc, max_rank=5, protocol="cuhk03", seed=3, num_repeats=4, backend="torch")
    np.testing.assert_array_equal(default.cmc, ten.cmc)
    assert not np.array_equal(default.cmc, four.cmc)
