"""Ranking metrics against a direct implementation (the gallery sorted by (distance, gallery
index) pairs: the order of a stable argsort, as the field's evaluators rank ties) and
hand-computed cases, on continuous, tied and quantised distances."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import reid.evaluation.rank as rank_mod
from reid.evaluation import HAVE_NUMBA, NonFiniteError, compute_distance, evaluate_features, evaluate_rank
from reid.evaluation.rank import Cuhk03Draws, GalleryIndex

BACKENDS = ["torch"] + (["numba"] if HAVE_NUMBA else [])


def slow_market(dist, qp, gp, qc, gc, max_rank=50, use_cam=True):
    """Direct implementation: sort by (distance, gallery index), drop same pid+camera, precision
    at each match."""
    first, aps, traps, inps, valid = [], [], [], [], []
    cmc_rows = []
    for q in range(len(qp)):
        order = np.array(sorted(range(len(gp)), key=lambda g: (dist[q, g], g)))
        keep = ~((gp[order] == qp[q]) & (gc[order] == qc[q])) if use_cam else np.ones(len(order), bool)
        hits = (gp[order][keep] == qp[q]).astype(float)
        if not hits.any():
            valid.append(False)
            first.append(-1)
            continue
        valid.append(True)
        ranks = np.flatnonzero(hits) + 1
        n = len(ranks)
        prec = np.arange(1, n + 1) / ranks
        old = np.where(ranks > 1, np.arange(n) / np.maximum(ranks - 1, 1), 1.0)
        aps.append(prec.mean())
        traps.append(((old + prec) / 2).mean())
        inps.append(n / ranks[-1])
        first.append(ranks[0])
        cmc_rows.append((np.arange(1, max_rank + 1) >= ranks[0]).astype(float))
    return dict(cmc=np.mean(cmc_rows, 0), ap=np.array(aps), trap=np.array(traps), inp=np.array(inps),
                first=np.array(first), valid=np.array(valid))


def random_problem(seed, nq=40, ng=300, nid=30, ncam=4, distractors=0, absent=0, dtype=np.float32, levels=0):
    """Distances continuous (no ties), or with ``levels`` > 0 quantised to that many values
    (``levels=1``: all equal)."""
    rng = np.random.default_rng(seed)
    gp = rng.integers(1, nid + 1, ng)
    gp[:distractors] = 0  # distractors: pid 0, never a query identity
    qp = rng.integers(1, nid + 1 + absent, nq)  # pids > nid: no true match at all
    gc, qc = rng.integers(0, ncam, ng), rng.integers(0, ncam, nq)
    dist = rng.random((nq, ng)).astype(dtype)
    if levels:
        dist = (np.floor(dist * levels) / levels).astype(dtype)
    return dist, qp, gp, qc, gc


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", [
    dict(seed=0), dict(seed=1, distractors=80), dict(seed=2, absent=10), dict(seed=3, ncam=2, absent=3, nid=60),
    dict(seed=4, ng=20, nid=5), dict(seed=5, dtype=np.float64, distractors=30, ncam=2),
    dict(seed=6, nq=7, ng=2000, nid=10),  # many true matches per query (> the kernel's linear limit)
])
def test_market_matches_direct_implementation(case, backend):
    dist, qp, gp, qc, gc = random_problem(**case)
    ref = slow_market(dist, qp, gp, qc, gc)
    for ap_mode, key in (("standard", "ap"), ("trapezoid", "trap")):
        r = evaluate_rank(dist, qp, gp, qc, gc, ap_mode=ap_mode, backend=backend)
        np.testing.assert_allclose(r.cmc, ref["cmc"], atol=1e-12)
        np.testing.assert_allclose(r.ap, ref[key], atol=1e-12)
        np.testing.assert_allclose(r.inp, ref["inp"], atol=1e-12)
        assert r.mAP == pytest.approx(ref[key].mean(), abs=1e-12)
        assert r.mINP == pytest.approx(ref["inp"].mean(), abs=1e-12)
        np.testing.assert_array_equal(r.valid, ref["valid"])
        np.testing.assert_array_equal(r.first_match_rank, ref["first"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("protocol", ["market", "hands"])
@pytest.mark.parametrize("case", [
    dict(seed=20, levels=1), dict(seed=21, levels=3), dict(seed=22, levels=20, dtype=np.float64),
    dict(seed=23, levels=2, nq=5, ng=1500, nid=6),  # > the kernel's linear limit of true matches
])
def test_ties_rank_in_gallery_order(case, protocol, backend):
    dist, qp, gp, qc, gc = random_problem(**{"nq": 12, "ng": 90, "nid": 8, **case})
    ref = slow_market(dist, qp, gp, qc, gc, use_cam=protocol == "market")
    r = evaluate_rank(dist, qp, gp, qc, gc, protocol=protocol, backend=backend)
    np.testing.assert_array_equal(r.first_match_rank, ref["first"])
    np.testing.assert_allclose(r.ap, ref["ap"], atol=1e-12)
    np.testing.assert_allclose(r.inp, ref["inp"], atol=1e-12)
    np.testing.assert_allclose(r.cmc, ref["cmc"], atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_equal_distances_are_not_a_perfect_score(backend):
    # every distance equal: the gallery order decides; the true matches are 2nd, 4th and 6th
    gp, gc = np.array([2, 1, 3, 1, 2, 1]), np.ones(6, np.int64)
    r = evaluate_rank(np.zeros((1, 6), np.float32), [1], gp, [0], gc, max_rank=3, backend=backend)
    assert r.first_match_rank.tolist() == [2] and r.cmc.tolist() == [0, 1, 1]
    assert r.mAP == pytest.approx((1 / 2 + 2 / 4 + 3 / 6) / 3) and r.mINP == pytest.approx(3 / 6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hands_protocol_keeps_same_camera(backend):
    dist, qp, gp, qc, gc = random_problem(7, ncam=2)
    ref = slow_market(dist, qp, gp, qc, gc, use_cam=False)
    r = evaluate_rank(dist, qp, gp, qc, gc, protocol="hands", backend=backend)
    np.testing.assert_allclose(r.cmc, ref["cmc"], atol=1e-12)
    np.testing.assert_allclose(r.ap, ref["ap"], atol=1e-12)
    np.testing.assert_allclose(r.inp, ref["inp"], atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_case(backend):
    # query pid 1, camera 1; gallery in distance order: junk (same pid+cam), neg, pos, neg, pos
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]], np.float32)
    gp, gc = np.array([1, 2, 1, 3, 1]), np.array([1, 2, 2, 2, 3])
    qp, qc = np.array([1, 9]), np.array([1, 1])  # the second query has no match: skipped
    r = evaluate_rank(dist, qp, gp, qc, gc, max_rank=5, backend=backend)
    np.testing.assert_allclose(r.cmc, [0, 1, 1, 1, 1])
    assert r.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert r.mINP == pytest.approx(2 / 4)
    assert r.first_match_rank.tolist() == [2, -1] and r.valid.tolist() == [True, False]
    t = evaluate_rank(dist, qp, gp, qc, gc, max_rank=5, ap_mode="trapezoid", backend=backend)
    assert t.mAP == pytest.approx(((0 + 1 / 2) / 2 + (1 / 3 + 2 / 4) / 2) / 2)  # = 1/3
    h = evaluate_rank(dist, qp, gp, qc, gc, max_rank=5, protocol="hands", backend=backend)
    assert h.mAP == pytest.approx((1 + 2 / 3 + 3 / 5) / 3) and h.mINP == pytest.approx(3 / 5)
    np.testing.assert_allclose(h.cmc, [1, 1, 1, 1, 1])


def test_gallery_shorter_than_max_rank_and_junk_pids():
    dist = np.array([[0.3, 0.1, 0.2]], np.float32)
    r = evaluate_rank(dist, [5], [5, 7, -1], [0], [1, 1, 1], max_rank=10)
    assert r.cmc.shape == (10,)
    np.testing.assert_allclose(r.cmc, [0, 0, 1] + [1] * 7)  # torchreid truncates to 3 ranks: equal there
    j = evaluate_rank(dist, [5], [5, 7, -1], [0], [1, 1, 1], max_rank=10, junk_pids=(-1,))
    np.testing.assert_allclose(j.cmc[:2], [0, 1])
    assert j.mAP == pytest.approx(1 / 2)


def test_inputs_numpy_or_torch_and_errors():
    dist, qp, gp, qc, gc = random_problem(8)
    a = evaluate_rank(dist, qp, gp, qc, gc)
    b = evaluate_rank(torch.from_numpy(dist), torch.from_numpy(qp), torch.from_numpy(gp), torch.from_numpy(qc), gc)
    assert a.mAP == b.mAP and np.array_equal(a.cmc, b.cmc)
    assert set(a.summary()) == {"rank1", "rank5", "rank10", "mAP", "mINP"}
    with pytest.raises(ValueError, match="protocol"):
        evaluate_rank(dist, qp, gp, qc, gc, protocol="viper")
    with pytest.raises(ValueError, match="entries"):
        evaluate_rank(dist, qp[:-1], gp, qc, gc)
    with pytest.raises(ValueError, match="no query"):
        evaluate_rank(dist, qp + 1000, gp, qc, gc)


@pytest.mark.cuda_capable
@pytest.mark.parametrize("levels", [0, 1, 5])
def test_cuda_path_equals_cpu(levels, device):
    dist, qp, gp, qc, gc = random_problem(9, distractors=20, levels=levels)
    a = evaluate_rank(dist, qp, gp, qc, gc)
    b = evaluate_rank(torch.from_numpy(dist).to(device), qp, gp, qc, gc)
    assert a.mAP == pytest.approx(b.mAP, abs=1e-12) and np.array_equal(a.cmc, b.cmc)
    np.testing.assert_array_equal(a.first_match_rank, b.first_match_rank)
    c = evaluate_rank(dist, qp, gp, qc, gc, protocol="cuhk03")
    d = evaluate_rank(torch.from_numpy(dist).to(device), qp, gp, qc, gc, protocol="cuhk03")
    np.testing.assert_allclose(c.cmc, d.cmc, atol=1e-12)


@pytest.mark.parametrize("levels", [0, 1, 4])
def test_cuhk03_single_shot_matches_direct_draws(levels):
    dist, qp, gp, qc, gc = random_problem(10, nq=30, ng=200, nid=20, distractors=10, levels=levels)
    r = evaluate_rank(dist, qp, gp, qc, gc, protocol="cuhk03", max_rank=20, num_repeats=4, seed=3)
    draws = Cuhk03Draws(GalleryIndex(gp, gc, torch.device("cpu")), num_repeats=4, seed=3)
    keys = [k.numpy() for k in draws.keys]
    rows = []
    for q in range(len(qp)):
        elig_pos = (gp == qp[q]) & (gc != qc[q])
        if not elig_pos.any():
            continue
        acc = np.zeros(20)
        for key in keys:
            picks = {}
            for pid in np.unique(gp):
                m = (gp == pid) & (elig_pos if pid == qp[q] else True)
                if m.any():
                    picks[pid] = np.flatnonzero(m)[np.argmin(key[m])]
            d = {pid: (dist[q, g], g) for pid, g in picks.items()}  # ranked by (distance, index)
            rank = 1 + sum(v < d[qp[q]] for pid, v in d.items() if pid != qp[q])
            acc += np.arange(1, 21) >= rank
        rows.append(acc / len(keys))
    np.testing.assert_allclose(r.cmc, np.mean(rows, 0), atol=1e-12)
    # AP/INP are the market ones on the whole kept gallery; the draws are seeded
    m = evaluate_rank(dist, qp, gp, qc, gc, max_rank=20)
    assert r.mAP == m.mAP and r.mINP == m.mINP
    again = evaluate_rank(dist, qp, gp, qc, gc, protocol="cuhk03", max_rank=20, num_repeats=4, seed=3)
    np.testing.assert_array_equal(r.cmc, again.cmc)


@pytest.mark.cuda_capable
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("protocol", ["market", "cuhk03", "hands"])
def test_evaluate_features_equals_full_matrix(metric, protocol, device):
    g = torch.Generator().manual_seed(0)
    qf, gf = torch.randn(60, 16, generator=g), torch.randn(400, 16, generator=g)
    rng = np.random.default_rng(0)
    qp, gp = rng.integers(0, 40, 60), rng.integers(0, 40, 400)
    qc, gc = rng.integers(0, 3, 60), rng.integers(0, 3, 400)
    a = evaluate_rank(compute_distance(qf, gf, metric), qp, gp, qc, gc, protocol=protocol)
    b = evaluate_features(qf.to(device), gf.to(device), qp, gp, qc, gc, metric=metric, protocol=protocol,
                          chunk_size=17)
    np.testing.assert_array_equal(a.cmc, b.cmc)
    np.testing.assert_array_equal(a.ap, b.ap)
    assert a.mINP == b.mINP


def test_torch_fallback_when_numba_missing(monkeypatch):
    monkeypatch.setattr(rank_mod, "HAVE_NUMBA", False)
    dist, qp, gp, qc, gc = random_problem(11)
    r = evaluate_rank(dist, qp, gp, qc, gc)
    ref = slow_market(dist, qp, gp, qc, gc)
    np.testing.assert_allclose(r.ap, ref["ap"], atol=1e-12)
    with pytest.raises(ImportError, match="fast"):
        evaluate_rank(dist, qp, gp, qc, gc, backend="numba")


def test_compute_distance():
    g = torch.Generator().manual_seed(1)
    q, x = torch.randn(5, 8, generator=g), torch.randn(7, 8, generator=g)
    e = compute_distance(q, x, "euclidean")
    torch.testing.assert_close(e, torch.cdist(q, x), atol=1e-5, rtol=1e-5)
    c = compute_distance(q, x, "cosine")
    torch.testing.assert_close(c, 1 - torch.nn.functional.cosine_similarity(q[:, None], x[None], dim=2))
    with pytest.raises(ValueError, match="metric"):
        compute_distance(q, x, "manhattan")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_distances_are_an_error_not_a_figure(bad, backend):
    dist, qp, gp, qc, gc = random_problem(12)
    dist[[5, 9], 3] = bad
    with pytest.raises(NonFiniteError, match=r"^distances: 2 of 40 query rows hold NaN or infinite values "
                                             r"\(the first: row 5\)"):
        evaluate_rank(dist, qp, gp, qc, gc, backend=backend)
    with pytest.raises(NonFiniteError, match=r"^data set 'x': re-ranked distances: 2 of 40 .* re-ranking"):
        evaluate_rank(dist, qp, gp, qc, gc, backend=backend, where="data set 'x'", stage="re-ranked distances")
    # all-NaN distances used to rank every true match first: rank-1 and mAP 100%
    with pytest.raises(NonFiniteError):
        evaluate_rank(np.full_like(dist, np.nan), qp, gp, qc, gc, backend=backend)


def test_non_finite_features_or_chunk_distances_are_an_error():
    g = torch.Generator().manual_seed(0)
    qf, gf = torch.randn(30, 8, generator=g), torch.randn(50, 8, generator=g)
    rng = np.random.default_rng(0)
    qp, gp, qc, gc = rng.integers(0, 10, 30), rng.integers(0, 10, 50), rng.integers(0, 3, 30), rng.integers(0, 3, 50)
    bad = gf.clone()
    bad[[4, 6]] = float("nan")
    with pytest.raises(NonFiniteError, match=r"^gallery features: 2 of 50 gallery rows .* row 4\); the model's"):
        evaluate_features(qf, bad, qp, gp, qc, gc)

    def dist_fn(rows):
        d = compute_distance(qf[rows], gf)
        d[rows == 17] = float("nan")
        return d

    with pytest.raises(NonFiniteError, match=r"^re-ranked distances: 1 of 10 query rows \(rows 10-19 of 30\) "
                                             r"hold NaN or infinite values \(the first: row 17\)"):
        evaluate_features(qf, gf, qp, gp, qc, gc, dist_fn=dist_fn, chunk_size=10, stage="re-ranked distances")
