"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) and alpha query expansion.

Re-ranking here never builds a dense N x N matrix besides the inputs: one pass over row chunks of
the normalised squared distances keeps each image's nearest neighbours, the k-reciprocal
expansion is done on those index arrays, the encodings V are sparse (CSR), and the Jaccard
distances are computed only for query rows against gallery columns. It reproduces the reference
implementation (same neighbour sets, same weights; results equal up to float rounding).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from reid.evaluation._kernels import HAVE_NUMBA, expansion_sets, jaccard_rows, qe_count, qe_fill, topk_cols
from reid.evaluation.distance import check_metric

RowFn = Callable[[int, int], torch.Tensor]


# --------------------------------------------------------------------------------------- AQE
@torch.no_grad()
def aqe(qf: torch.Tensor, gf: torch.Tensor, k: int = 10, alpha: float = 3.0, times: int = 1,
        chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Alpha query expansion (Radenović et al.): each feature becomes the mean of its ``k`` most
    similar features (cosine, among queries and gallery, itself included) weighted by
    ``similarity ** alpha``, as fast-reid's ``aqe``; repeated ``times`` times.

    qf [Nq, D], gf [Ng, D] -> expanded (qf [Nq, D], gf [Ng, D]) float32 on qf's device
    (un-normalised: normalise or use the cosine metric afterwards).
    """
    qf = torch.as_tensor(qf)
    nq = len(qf)
    feats = torch.cat([qf, torch.as_tensor(gf).to(qf.device)]).float()
    for _ in range(times):
        norm = torch.nn.functional.normalize(feats, dim=1)
        out = torch.empty_like(feats)
        kk = min(k, len(feats))
        for s in range(0, len(feats), chunk):
            w, idx = torch.topk(norm[s:s + chunk] @ norm.T, kk, dim=1)
            out[s:s + chunk] = torch.einsum("bk,bkd->bd", w.pow(alpha), feats[idx]) / kk
        feats = out
    return feats[:nq], feats[nq:]


# ------------------------------------------------------------------------------ re-ranking core
def _square32(x: torch.Tensor) -> torch.Tensor:
    """``x ** 2`` rounded to float32 as the reference does (square in the input precision)."""
    return (x * x).float() if x.dtype == torch.float64 else (x.float() * x.float())


def _smallest(o: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [R, k] of the ``k`` smallest entries of each row of o [R, N], by (value, index):
    among equal values the lower indices, as the reference's stable argsort and the numba
    search (``torch.topk`` picks and orders ties arbitrarily)."""
    more = int(k < o.shape[1])  # one more value tells whether the k-th is tied with one left out
    vals, idx = torch.topk(o, k + more, dim=1, largest=False, sorted=True)
    kth, idx = vals[:, k - 1:k], idx[:, :k]
    # rows where it is: choose the tied entries by index
    rows = torch.nonzero(vals[:, k] == kth[:, 0])[:, 0] if more else idx[:0, 0]
    if len(rows):
        r, t = o[rows], kth[rows]
        below = r < t
        eq = r == t
        take = below | (eq & (torch.cumsum(eq, 1) <= k - below.sum(1, keepdim=True)))
        idx[rows] = torch.nonzero(take)[:, 1].view(len(rows), k)
    # order the picked by (value, index): ascending indices, then a stable sort by value
    idx = torch.sort(idx, dim=1).values
    return torch.gather(idx, 1, torch.sort(torch.gather(o, 1, idx), dim=1, stable=True).indices)


def _neighbours(row_fn: RowFn, n: int, k: int, chunk: int) -> torch.Tensor:
    """Sorted ``k`` nearest indices [N, k] of every row of O (row_fn(a, b) -> O[a:b] float32
    [b-a, N]; it also records each row's normaliser for later gathers); ties by index."""
    k = min(k, n)
    nbr = torch.empty(n, k, dtype=torch.int64)
    for a in range(0, n, chunk):
        o = row_fn(a, min(a + chunk, n))
        nbr[a:a + len(o)] = _smallest(o, k).cpu()
    return nbr


def _reciprocal(nbr: torch.Tensor, k: int, chunk: int = 8192) -> torch.Tensor:
    """Mask [N, k]: ``nbr[i, t]`` is a k-reciprocal neighbour of i (i in its first k too)."""
    nb = nbr[:, :k]
    out = torch.empty_like(nb, dtype=torch.bool)
    for a in range(0, len(nb), chunk):
        ids = torch.arange(a, min(a + chunk, len(nb)))
        out[a:a + len(ids)] = (nb[nb[ids]] == ids[:, None, None]).any(-1)
    return out


def _expansion(nbr: torch.Tensor, k1: int, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """k-reciprocal expansion sets as CSR (indptr [N+1], indices): R(i, k1+1) plus every
    R(c, round(k1/2)+1) of c in R(i) sharing more than 2/3 of its members with R(i)."""
    n = len(nbr)
    K1 = min(k1 + 1, nbr.shape[1])
    Kh = min(int(round(k1 / 2)) + 1, nbr.shape[1])
    if HAVE_NUMBA:
        out = np.empty((n, K1 * (1 + Kh)), np.int64)
        cnt = np.empty(n, np.int64)
        expansion_sets(np.ascontiguousarray(nbr.numpy()), K1, Kh, out, cnt, np.empty((n, Kh), np.int64))
        indptr = torch.zeros(n + 1, dtype=torch.int64)
        indptr[1:] = torch.cumsum(torch.from_numpy(cnt), 0)
        return indptr, torch.from_numpy(out[np.arange(K1 * (1 + Kh))[None, :] < cnt[:, None]])
    nb1, nbh = nbr[:, :K1], nbr[:, :Kh]
    m1, mh = _reciprocal(nbr, K1), _reciprocal(nbr, Kh)
    sets = []
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        r1 = torch.where(m1[a:b], nb1[a:b], -1)  # [B, K1]
        cand = nb1[a:b]  # candidates c
        rc = torch.where(mh[cand], nbh[cand], -2)  # [B, K1, Kh]
        inter = (rc[..., None] == r1[:, None, None, :]).any(-1).sum(-1)  # |R(c) ∩ R(i)|
        size = mh[cand].sum(-1)
        accept = m1[a:b] & (inter.double() > (2.0 / 3.0) * size.double())
        extra = torch.where(accept[..., None], rc, -1).reshape(b - a, -1)
        allv = torch.cat([r1, extra], 1)
        allv, _ = torch.sort(allv, 1)
        keep = allv >= 0
        keep[:, 1:] &= allv[:, 1:] != allv[:, :-1]
        sets.append((keep.sum(1), allv[keep]))
    counts = torch.cat([c for c, _ in sets])
    indptr = torch.zeros(n + 1, dtype=torch.int64)
    indptr[1:] = torch.cumsum(counts, 0)
    return indptr, torch.cat([v for _, v in sets])


def _row_ids(indptr: torch.Tensor) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(indptr) - 1), indptr[1:] - indptr[:-1])


def _gather_rows(indptr, indices, values, rows: torch.Tensor):
    """Entries of CSR rows ``rows`` [R]: (position in ``rows`` [E], column [E], value [E])."""
    lens = indptr[rows + 1] - indptr[rows]
    owner = torch.repeat_interleave(torch.arange(len(rows)), lens)
    starts = torch.cumsum(lens, 0) - lens
    pos = torch.arange(int(lens.sum())) - starts[owner] + indptr[rows][owner]
    return owner, indices[pos], values[pos]


def _encode(indptr, indices, o_gather, nbr: torch.Tensor, k2: int):
    """Sparse V (CSR, float32): Gaussian kernel weights over each expansion set, normalised; then
    averaged over each image's ``k2`` nearest neighbours (local query expansion) when k2 > 1."""
    n = len(indptr) - 1
    rows = _row_ids(indptr)
    w = torch.exp(-o_gather(rows, indices))
    sums = torch.zeros(n, dtype=torch.float32).index_add_(0, rows, w)
    vals = w / sums[rows]
    if k2 == 1:
        return indptr, indices, vals
    k2 = min(k2, nbr.shape[1])
    if HAVE_NUMBA:
        nb = np.ascontiguousarray(nbr[:, :k2].numpy())
        counts = np.empty(n, np.int64)
        qe_count(nb, k2, indptr.numpy(), indices.numpy(), counts)
        optr = np.zeros(n + 1, np.int64)
        optr[1:] = np.cumsum(counts)
        oidx, oval = np.empty(optr[-1], np.int64), np.empty(optr[-1], np.float32)
        qe_fill(nb, k2, indptr.numpy(), indices.numpy(), vals.numpy(), optr, oidx, oval)
        return torch.from_numpy(optr), torch.from_numpy(oidx), torch.from_numpy(oval)
    out_ptr = torch.zeros(n + 1, dtype=torch.int64)
    out_idx, out_val = [], []
    chunk = max(1, (1 << 22) // max(k2 * int((indptr[1:] - indptr[:-1]).max()), 1))
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        owner, cols, v = _gather_rows(indptr, indices, vals, nbr[a:b, :k2].reshape(-1))
        owner = owner // k2  # local row
        key = owner * n + cols
        uk, inv = torch.unique(key, return_inverse=True)
        acc = torch.zeros(len(uk), dtype=torch.float64).index_add_(0, inv, v.double())
        r = uk // n
        out_ptr[a + 1:b + 1] = torch.bincount(r, minlength=b - a)
        out_idx.append(uk % n)
        out_val.append((acc / k2).float())
    out_ptr = torch.cumsum(out_ptr, 0)
    return out_ptr, torch.cat(out_idx), torch.cat(out_val)


class _Reranker:
    """Shared re-ranking state: the sparse encodings V of all N = Nq + Ng images.

    nbr [N, K]: each image's nearest neighbours in O order (K >= max(k1 + 1, k2));
    o_gather(i, j) -> O[i, j]; o_query(q_rows) -> O[q_rows, Nq:] [B, Ng].
    ``distances(q_rows) -> [B, Ng]``: re-ranked distances of query rows ``q_rows``."""

    def __init__(self, nbr: torch.Tensor, o_gather, o_query, nq: int, k1: int, k2: int, lambda_value: float):
        self.o_query, self.nq, self.n, self.lam = o_query, nq, len(nbr), float(lambda_value)
        indptr, indices = _expansion(nbr, k1)
        vptr, vidx, vval = _encode(indptr, indices, o_gather, nbr, k2)
        del indptr, indices
        self.vptr, self.vidx, self.vval = vptr, vidx, vval
        n = self.n
        # CSC restricted to gallery rows (j >= nq): for each column, its gallery rows and values
        rows = _row_ids(vptr)
        g = rows >= nq
        cols, grow, gval = vidx[g], rows[g] - nq, vval[g]
        order = torch.argsort(cols, stable=True)
        self.cptr = torch.zeros(n + 1, dtype=torch.int64)
        self.cptr[1:] = torch.cumsum(torch.bincount(cols, minlength=n), 0)
        self.crow, self.cval = grow[order], gval[order]

    def jaccard(self, q_rows: torch.Tensor) -> torch.Tensor:
        """Jaccard distances [B, Ng] between the encodings of query rows and of the gallery."""
        ng = self.n - self.nq
        if HAVE_NUMBA:
            out = np.empty((len(q_rows), ng), np.float32)
            jaccard_rows(q_rows.numpy(), self.vptr.numpy(), self.vidx.numpy(), self.vval.numpy(),
                         self.cptr.numpy(), self.crow.numpy(), self.cval.numpy(), out)
            return torch.from_numpy(out)
        acc = torch.zeros(len(q_rows) * ng, dtype=torch.float32)
        owner, cols, v = _gather_rows(self.vptr, self.vidx, self.vval, q_rows)
        # pair every query entry (i, k, v) with the gallery entries (j, k, w) of column k
        step = 1 << 14
        for s in range(0, len(owner), step):
            o, c, vv = owner[s:s + step], cols[s:s + step], v[s:s + step]
            lens = self.cptr[c + 1] - self.cptr[c]
            e = torch.repeat_interleave(torch.arange(len(c)), lens)
            starts = torch.cumsum(lens, 0) - lens
            pos = torch.arange(int(lens.sum())) - starts[e] + self.cptr[c][e]
            acc.index_add_(0, o[e] * ng + self.crow[pos], torch.minimum(vv[e], self.cval[pos]))
        acc = acc.view(len(q_rows), ng)
        return 1 - acc / (2 - acc)

    @torch.no_grad()
    def distances(self, q_rows) -> torch.Tensor:
        q_rows = torch.as_tensor(q_rows).long().cpu()
        out = self.jaccard(q_rows)
        out.mul_(1 - self.lam).add_(self.o_query(q_rows).cpu(), alpha=self.lam)
        return out


def _neighbours_numba(blocks, n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest indices [N, k] and normalisers [N] (max squared distance) of every O row, i.e.
    D column, from D blocks: (matrix, transposed, row offset, column offset), each D column's
    blocks listed in increasing row order. One streaming pass over the inputs."""
    vals = np.full((n, k), np.inf, np.float32)
    idx = np.full((n, k), -1, np.int64)
    colmax = np.zeros(n, np.float32)
    for m, transposed, r0, c0 in blocks:
        m = np.ascontiguousarray(m)
        cols = m.shape[0] if transposed else m.shape[1]
        topk_cols(m, transposed, r0, vals[c0:c0 + cols], idx[c0:c0 + cols], colmax[c0:c0 + cols])
    return torch.from_numpy(idx), torch.from_numpy(colmax)


def _absmax(x: torch.Tensor, dim: int, chunk: int = 1024) -> torch.Tensor:
    """max |x| along ``dim`` of a 2-D tensor, reading row chunks."""
    if dim == 1:
        return torch.cat([x[a:a + chunk].abs().amax(1) for a in range(0, len(x), chunk)])
    out = torch.zeros(x.shape[1], dtype=x.dtype)
    for a in range(0, len(x), chunk):
        c = x[a:a + chunk]
        out = torch.maximum(out, torch.maximum(c.amax(0), -c.amin(0)))
    return out


# -------------------------------------------------------------------------- distance-matrix form
@torch.no_grad()
def re_rank(q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
            chunk: int = 1024):
    """k-reciprocal re-ranking of query x gallery distances (Zhong et al., CVPR 2017).

    q_g_dist [Nq, Ng], q_q_dist [Nq, Nq], g_g_dist [Ng, Ng] (NumPy or CPU torch, any float) ->
    re-ranked distances [Nq, Ng] float32, NumPy or torch like ``q_g_dist``. Same results as the
    reference ``re_ranking`` (torchreid/fast-reid) up to float rounding; the extra memory is the
    output, the sparse encodings and one chunk of ``chunk`` x (Nq + Ng) distances. With numba the
    neighbour search streams over the inputs in compiled code, else it uses torch ``topk``.
    """
    as_numpy = not isinstance(q_g_dist, torch.Tensor)
    qg, qq, gg = (torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x.cpu()
                  for x in (q_g_dist, q_q_dist, g_g_dist))
    nq, ng = qg.shape
    if qq.shape != (nq, nq) or gg.shape != (ng, ng):
        raise ValueError(f"shapes {tuple(qg.shape)}, {tuple(qq.shape)}, {tuple(gg.shape)} do not match")
    if not qg.is_floating_point():
        qg, qq, gg = qg.double(), qq.double(), gg.double()
    n = nq + ng
    k = min(max(k1 + 1, k2), n)
    # O[i, j] = float32(D[j, i] ** 2) / scale[i], D = [[qq, qg], [qg.T, gg]]: the reference's
    # squared distances normalised by each column's maximum, transposed

    def columns(a: int, b: int) -> torch.Tensor:
        """D[:, a:b].T (a, b on one side of nq)."""
        if b <= nq:
            return torch.cat([qq[:, a:b].T, qg[a:b]], 1)
        return torch.cat([qg[:, a - nq:b - nq].T, gg[:, a - nq:b - nq].T], 1)

    if HAVE_NUMBA:
        nbr, scale = _neighbours_numba([(qq.numpy(), False, 0, 0), (qg.numpy(), True, nq, 0),
                                        (qg.numpy(), False, 0, nq), (gg.numpy(), False, nq, nq)], n, k)
    else:
        amax = torch.cat([torch.maximum(_absmax(qq, 0), _absmax(qg, 1)),
                          torch.maximum(_absmax(qg, 0), _absmax(gg, 0))])
        scale = _square32(amax)

        def row_fn(a: int, b: int) -> torch.Tensor:
            parts = [_square32(columns(s, e)) / scale[s:e, None]
                     for s, e in ((a, min(b, nq)), (max(a, nq), b)) if s < e]
            return torch.cat(parts) if len(parts) > 1 else parts[0]

        nbr = _neighbours(row_fn, n, k, chunk)

    def o_gather(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """O[i, j] for index vectors i, j."""
        d = torch.empty(len(i), dtype=qg.dtype)
        iq, jq = i < nq, j < nq
        for m, src, r, c in ((iq & jq, qq, j, i), (iq & ~jq, qg, i, j - nq),
                             (~iq & jq, qg, j, i - nq), (~iq & ~jq, gg, j - nq, i - nq)):
            d[m] = src[r[m], c[m]]
        return _square32(d) / scale[i]

    def o_query(q_rows: torch.Tensor) -> torch.Tensor:
        return _square32(qg[q_rows]).div_(scale[q_rows, None])

    rr = _Reranker(nbr, o_gather, o_query, nq, k1, k2, lambda_value)
    out = torch.empty(nq, ng, dtype=torch.float32)
    step = max(1, chunk // 4)  # output rows per step: small temporaries besides the output
    for a in range(0, nq, step):
        out[a:a + step] = rr.distances(torch.arange(a, min(a + step, nq)))
    return out.numpy() if as_numpy else out


# ---------------------------------------------------------------------------------- feature form
class FeatureReranker:
    """k-reciprocal re-ranking from features, for sets too large for dense N x N matrices.

    ``FeatureReranker(qf [Nq, D], gf [Ng, D], metric, k1, k2, lambda_value)`` computes the nearest
    neighbours chunk by chunk (``chunk`` rows of N distances at a time, on ``device``) and keeps
    sparse encodings; ``distances(q_rows [B]) -> [B, Ng]`` gives re-ranked distances of those
    queries, usable as ``evaluate_features(..., dist_fn=reranker.distances)``. Distances are the
    rows D[i, :] of the full (symmetric) feature distance matrix.
    """

    @torch.no_grad()
    def __init__(self, qf, gf, metric: str = "cosine", k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                 device: str | torch.device | None = None, chunk: int = 1024):
        check_metric(metric)
        qf = torch.as_tensor(qf)
        dev = torch.device(device) if device is not None else qf.device
        f = torch.cat([qf.to(dev), torch.as_tensor(gf).to(dev)]).float()
        if metric == "cosine":
            f = torch.nn.functional.normalize(f, dim=1)
        sq = (f * f).sum(1)
        n, nq = len(f), len(qf)
        rmax = torch.empty(n, dtype=torch.float32)

        def dist_rows(a: int, b: int) -> torch.Tensor:
            if metric == "cosine":
                return 1.0 - f[a:b] @ f.T
            d2 = torch.addmm(sq[a:b, None] + sq[None, :], f[a:b], f.T, alpha=-2.0).clamp_(min=0)
            return d2 if metric == "sqeuclidean" else d2.sqrt_()

        def row_fn(a: int, b: int) -> torch.Tensor:
            d2 = _square32(dist_rows(a, b))
            mx = d2.max(1).values
            rmax[a:b] = mx.cpu()
            return d2 / mx[:, None]

        def o_query(q_rows: torch.Tensor) -> torch.Tensor:
            a, b = int(q_rows.min()), int(q_rows.max()) + 1
            return row_fn(a, b)[q_rows.to(dev) - a, nq:]

        def o_gather(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
            out = torch.empty(len(i), dtype=torch.float32)
            step = 1 << 18
            for s in range(0, len(i), step):
                ii, jj = i[s:s + step].to(dev), j[s:s + step].to(dev)
                dot = (f[ii] * f[jj]).sum(1)
                d = 1.0 - dot if metric == "cosine" else (sq[ii] + sq[jj] - 2 * dot).clamp(min=0)
                d = d if metric in ("cosine", "sqeuclidean") else d.sqrt()
                out[s:s + step] = _square32(d).cpu()
            return out / rmax[i]

        nbr = _neighbours(row_fn, n, max(k1 + 1, k2), chunk)
        self.rr = _Reranker(nbr, o_gather, o_query, nq, k1, k2, lambda_value)

    @torch.no_grad()
    def distances(self, q_rows) -> torch.Tensor:
        return self.rr.distances(q_rows)


def re_rank_features(qf, gf, metric: str = "cosine", k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                     device: str | torch.device | None = None, chunk: int = 1024) -> torch.Tensor:
    """Dense re-ranked distances [Nq, Ng] from features (see :class:`FeatureReranker`)."""
    rr = FeatureReranker(qf, gf, metric, k1, k2, lambda_value, device, chunk)
    nq = len(qf)
    return torch.cat([rr.distances(torch.arange(a, min(a + chunk, nq))) for a in range(0, nq, chunk)])
