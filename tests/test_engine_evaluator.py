"""The evaluator: dense and chunked (large-set) paths agree, with and without re-ranking and AQE;
several draws give means and standard deviations; NaN or infinite features or distances are an
error naming the data set, draw, split or stage, never a figure."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import reid.engine.evaluator as ev
from reid.config import load_config
from reid.data.datasets.base import ReidDataset, Sample
from reid.evaluation import NonFiniteError


def make_dataset(draws: int = 1) -> ReidDataset:
    rng = np.random.default_rng(0)
    query = [Sample(f"q{i}.jpg", int(i % 15), int(rng.integers(0, 3))) for i in range(30)]
    gallery = [Sample(f"g{i}.jpg", int(i % 20), int(rng.integers(0, 3))) for i in range(80)]
    pairs = [(query, gallery)] + [(query[d:], gallery) for d in range(1, draws)]
    return ReidDataset("toy", train=[Sample("t.jpg", 0, 0)], query=query, gallery=gallery,
                       draws=pairs if draws > 1 else None)


class FixedFeatures(ev.Evaluator):
    """Evaluator whose features are fixed, pid-correlated random vectors (no images, no model)."""

    def features(self, model):
        gen = torch.Generator().manual_seed(1)
        centres = torch.randn(20, 16, generator=gen)
        pids = torch.tensor([s.pid for s in self.samples])
        return torch.nn.functional.normalize(centres[pids] + 0.9 * torch.randn(len(pids), 16, generator=gen), dim=1)


@pytest.mark.cuda_capable
@pytest.mark.parametrize("opts", [[], ["test.rerank=true"], ["test.aqe=true"], ["test.metric=euclidean"]])
def test_chunked_path_equals_dense_path(monkeypatch, opts, device):
    cfg = load_config(None, ["test.max_rank=10", *opts])
    model = torch.nn.Identity()
    dense = FixedFeatures(cfg, make_dataset(), device).evaluate(model)
    monkeypatch.setattr(ev, "DENSE_LIMIT", 0)
    chunked = FixedFeatures(cfg, make_dataset(), device).evaluate(model)
    assert dense.keys() == chunked.keys()
    for k in dense:
        assert chunked[k] == pytest.approx(dense[k], abs=1e-4), k
    assert 0.2 < dense["mAP"] < 1.0


def test_draws_report_mean_and_std():
    cfg = load_config(None, ["test.max_rank=10"])
    metrics = FixedFeatures(cfg, make_dataset(draws=3), torch.device("cpu")).evaluate(torch.nn.Identity())
    assert metrics["draws"] == 3 and "mAP_std" in metrics and metrics["mAP_std"] >= 0


def test_collapsed_features_are_flagged(caplog):
    from reid.engine.evaluator import feature_spread, warn_if_collapsed

    g = torch.Generator().manual_seed(0)
    healthy = torch.nn.functional.normalize(torch.randn(200, 64, generator=g), dim=1)
    collapsed = torch.nn.functional.normalize(torch.ones(200, 64) + 1e-7 * torch.randn(200, 64, generator=g), dim=1)
    assert feature_spread(healthy) > 0.5 and feature_spread(collapsed) < 1e-5
    with caplog.at_level("WARNING", logger="reid"):
        assert not warn_if_collapsed(healthy)
        assert not caplog.records
        assert warn_if_collapsed(collapsed)
    assert "nearly identical" in caplog.text and "mean nothing" in caplog.text


class BrokenFeatures(FixedFeatures):
    """FixedFeatures with rows ``nan_rows`` (in ``self.samples`` order) set to NaN, or every
    feature the same exact vector (``collapsed``), or scaled by ``scale``."""

    nan_rows: tuple[int, ...] = ()
    collapsed = False
    scale = 1.0

    def features(self, model):
        f = super().features(model) * self.scale
        if self.collapsed:
            f = torch.zeros_like(f)
            f[:, 0] = 1  # cosine distances exactly 0: re-ranking divides 0 by 0
        f[list(self.nan_rows)] = float("nan")
        return f


@pytest.mark.parametrize("dense_limit", [ev.DENSE_LIMIT, 0])
def test_non_finite_features_are_an_error_naming_split_count_and_first_image(monkeypatch, dense_limit):
    monkeypatch.setattr(ev, "DENSE_LIMIT", dense_limit)
    cfg = load_config(None, ["test.max_rank=10"])
    e = BrokenFeatures(cfg, make_dataset(), torch.device("cpu"))
    gallery_row = e.index[e.draws[0][1][7]]  # a gallery-only sample
    e.nan_rows = (gallery_row, e.index[e.draws[0][1][12]])
    with pytest.raises(NonFiniteError) as err:
        e.evaluate(torch.nn.Identity())
    assert str(err.value).startswith(
        "data set 'toy': gallery features: 2 of 80 gallery images hold NaN or infinite values "
        "(the first: row 7, g7.jpg); the model's outputs are not finite")
    e.nan_rows = (e.index[e.draws[0][0][3]],)
    with pytest.raises(NonFiniteError, match=r"^data set 'toy': query features: 1 of 30 query images .* row 3, q3.jpg"):
        e.evaluate(torch.nn.Identity())
    hands = BrokenFeatures(cfg, make_dataset(draws=3), torch.device("cpu"))
    hands.nan_rows = (hands.index[hands.draws[2][0][-1]],)  # only in the draws' shared queries
    with pytest.raises(NonFiniteError, match=r"^data set 'toy', draw 0: query features: 1 of 30"):
        hands.evaluate(torch.nn.Identity())


@pytest.mark.parametrize("dense_limit", [ev.DENSE_LIMIT, 0])
def test_non_finite_distances_name_their_stage(monkeypatch, dense_limit):
    monkeypatch.setattr(ev, "DENSE_LIMIT", dense_limit)
    collapsed = BrokenFeatures(load_config(None, ["test.max_rank=10", "test.rerank=true"]), make_dataset(),
                               torch.device("cpu"))
    collapsed.collapsed = True
    with pytest.raises(NonFiniteError, match=r"^data set 'toy': re-ranked distances: 30 of 30 query rows .*"
                                             r"re-ranking produced them"):
        collapsed.evaluate(torch.nn.Identity())
    huge = BrokenFeatures(load_config(None, ["test.max_rank=10", "test.metric=euclidean"]), make_dataset(),
                          torch.device("cpu"))
    huge.scale = 1e30  # finite features whose float32 squared norms overflow
    with pytest.raises(NonFiniteError, match=r"^data set 'toy': distances: 30 of 30 query rows .*"
                                             r"features too large for the metric"):
        huge.evaluate(torch.nn.Identity())
