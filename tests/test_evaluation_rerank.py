"""Re-ranking and query expansion against direct dense implementations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import reid.evaluation.rerank as rr_mod
from reid.evaluation import (
    FeatureReranker,
    aqe,
    compute_distance,
    evaluate_features,
    evaluate_rank,
    re_rank,
    re_rank_features,
)


def dense_re_rank(q_g, q_q, g_g, k1=20, k2=6, lam=0.3):
    """Direct dense form of Zhong et al.'s k-reciprocal re-ranking (the reference algorithm)."""
    nq = len(q_q)
    d = np.block([[q_q, q_g], [q_g.T, g_g]])
    d = np.square(d).astype(np.float32)
    o = (d / d.max(axis=0)).T
    n = len(o)
    rank = np.argsort(o, axis=1, kind="stable")

    def recip(i, k):
        fwd = rank[i, :k + 1]
        return fwd[[i in rank[j, :k + 1] for j in fwd]]

    v = np.zeros_like(o)
    for i in range(n):
        r = recip(i, k1)
        exp = set(r.tolist())
        for c in r:
            rc = recip(c, int(round(k1 / 2)))
            if len(set(rc.tolist()) & set(r.tolist())) > 2.0 / 3 * len(rc):
                exp |= set(rc.tolist())
        idx = np.array(sorted(exp))
        w = np.exp(-o[i, idx])
        v[i, idx] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    jac = np.zeros((nq, n), np.float32)
    for i in range(nq):
        t = np.minimum(v[i][None, :], v).sum(1)
        jac[i] = 1 - t / (2 - t)
    return (jac * (1 - lam) + o[:nq] * lam)[:, nq:]


def clustered(seed, nq, ng, dim=16, nid=None, noise=0.7):
    g = torch.Generator().manual_seed(seed)
    nid = nid or max(2, (nq + ng) // 6)
    ids = torch.randint(0, nid, (nq + ng,), generator=g)
    f = torch.randn(nid, dim, generator=g)[ids] + noise * torch.randn(nq + ng, dim, generator=g)
    return f[:nq], f[nq:], ids[:nq].numpy(), ids[nq:].numpy()


def dists(qf, gf, metric):
    return [compute_distance(a, b, metric).numpy() for a, b in ((qf, gf), (qf, qf), (gf, gf))]


@pytest.mark.parametrize("seed,nq,ng,metric,params", [
    (0, 20, 150, "euclidean", (20, 6, 0.3)),
    (1, 30, 120, "cosine", (20, 6, 0.3)),
    (2, 10, 90, "euclidean", (7, 1, 0.5)),
    (3, 15, 100, "cosine", (11, 3, 0.0)),
    (4, 4, 12, "euclidean", (20, 6, 0.3)),  # fewer images than k1 + 1
    (5, 12, 80, "sqeuclidean", (20, 6, 0.3)),  # PCB's and BDB's distance: the chunked form takes it too
])
def test_re_rank_matches_dense_reference(seed, nq, ng, metric, params):
    qf, gf, _, _ = clustered(seed, nq, ng)
    qg, qq, gg = dists(qf, gf, metric)
    ref = dense_re_rank(qg, qq, gg, *params)
    np.testing.assert_allclose(re_rank(qg, qq, gg, *params), ref, atol=1e-5)
    out64 = re_rank(*(x.astype(np.float64) for x in (qg, qq, gg)), *params)
    ref64 = dense_re_rank(*(x.astype(np.float64) for x in (qg, qq, gg)), *params)
    np.testing.assert_allclose(out64, ref64, atol=1e-5)
    t = re_rank(*(torch.from_numpy(x) for x in (qg, qq, gg)), *params)
    assert isinstance(t, torch.Tensor) and t.shape == (nq, ng)
    np.testing.assert_allclose(t.numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(re_rank_features(qf, gf, metric, *params).numpy(), ref, atol=1e-4)


def test_re_rank_random_unstructured_inputs():
    rng = np.random.default_rng(5)
    x = rng.random((60, 60)).astype(np.float32)
    d = (x + x.T) / 2  # random symmetric "distances"
    np.fill_diagonal(d, 0)
    qg, qq, gg = d[:10, 10:], d[:10, :10], d[10:, 10:]
    np.testing.assert_allclose(re_rank(qg, qq, gg), dense_re_rank(qg, qq, gg), atol=1e-5)


def test_re_rank_without_numba(monkeypatch):
    qf, gf, _, _ = clustered(6, 12, 80)
    qg, qq, gg = dists(qf, gf, "euclidean")
    ref = dense_re_rank(qg, qq, gg)
    monkeypatch.setattr(rr_mod, "HAVE_NUMBA", False)
    np.testing.assert_allclose(re_rank(qg, qq, gg), ref, atol=1e-5)
    np.testing.assert_allclose(re_rank_features(qf, gf, "euclidean", chunk=7).numpy(), ref, atol=1e-4)


@pytest.mark.cuda_capable
def test_feature_reranker_in_chunked_evaluation(device):
    qf, gf, qp, gp = clustered(7, 40, 200, nid=30)
    rng = np.random.default_rng(0)
    qc, gc = rng.integers(0, 3, 40), rng.integers(0, 3, 200)
    dense = re_rank(*dists(qf, gf, "cosine"))
    full = evaluate_rank(dense, qp, gp, qc, gc)
    rr = FeatureReranker(qf, gf, "cosine", chunk=32, device=device)
    chunked = evaluate_features(qf.to(device), gf.to(device), qp, gp, qc, gc, dist_fn=rr.distances, chunk_size=9)
    assert chunked.mAP == pytest.approx(full.mAP, abs=1e-6)
    np.testing.assert_allclose(chunked.cmc, full.cmc)


def test_aqe_matches_direct_loop():
    g = torch.Generator().manual_seed(0)
    qf, gf = torch.randn(6, 5, generator=g), torch.randn(9, 5, generator=g)
    q2, g2 = aqe(qf, gf, k=3, alpha=3.0, chunk=4)
    f = torch.cat([qf, gf])
    n = torch.nn.functional.normalize(f, dim=1)
    expect = []
    for i in range(len(f)):
        sim = n @ n[i]
        idx = torch.argsort(sim, descending=True)[:3]
        expect.append((f[idx] * sim[idx, None] ** 3).mean(0))
    expect = torch.stack(expect)
    torch.testing.assert_close(torch.cat([q2, g2]), expect, atol=1e-5, rtol=1e-5)
    assert q2.shape == qf.shape and g2.shape == gf.shape


@pytest.mark.parametrize("numba", [True, False] if rr_mod.HAVE_NUMBA else [False])
def test_re_rank_ties_pick_neighbours_in_index_order(monkeypatch, numba):
    """Quantised distances (many ties): the nearest neighbours are chosen and ordered by (distance,
    index), as the reference's stable argsort, by the numba and the torch neighbour search."""
    rng = np.random.default_rng(8)
    x = np.floor(rng.random((60, 60)) * 6).astype(np.float32) / 6
    d = (x + x.T) / 2
    np.fill_diagonal(d, 0)
    qg, qq, gg = d[:10, 10:], d[:10, :10], d[10:, 10:]
    monkeypatch.setattr(rr_mod, "HAVE_NUMBA", numba)
    np.testing.assert_allclose(re_rank(qg, qq, gg), dense_re_rank(qg, qq, gg), atol=1e-5)
