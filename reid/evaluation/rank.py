"""Ranking metrics: CMC, mAP, mINP under the Market-1501, CUHK03 and hand-set protocols.

The kept gallery is ranked by (distance, gallery index): the order of a stable argsort of each
distance row, so equal distances rank in gallery order. Per query, only the rank of each true
match matters, and it equals ``1 + (true matches before it) + (negatives before it)``. Both
backends compute exactly that without an argsort of the gallery: the true matches (found through
a pid-grouped gallery index) are sorted, and each negative is placed among them by binary search.
torchreid and fast-reid rank with ``np.argsort(distmat, axis=1)`` (NumPy's default quicksort,
not stable): without ties the results are identical; with ties theirs depend on the NumPy
version and CPU, and equal those of ``kind="stable"`` only where the sort happens to keep the
gallery order (scripts/compare_evaluators.py).

Distances (and features) that are NaN or infinite are a :class:`NonFiniteError`, never a figure.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from reid.data.protocols import Protocol, get_protocol
from reid.evaluation._kernels import HAVE_NUMBA, market_stats
from reid.evaluation.distance import PreparedGallery
from reid.evaluation.finite import check_finite
from reid.registry import suggestion

BACKENDS = ("auto", "numba", "torch")
AP_MODES = ("standard", "trapezoid")


@dataclass
class RankResult:
    """Result of :func:`evaluate_rank`.

    ``cmc`` [max_rank]: fraction of valid queries whose first true match is at rank <= k+1.
    ``ap`` / ``inp`` [num_valid]: per valid query AP and INP, in query order; ``mAP``, ``mINP``
    their means. ``valid`` [Nq] bool: the query kept at least one true match.
    ``first_match_rank`` [Nq] int64: 1-based rank of the first true match (-1 where not valid).
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    ap: np.ndarray
    inp: np.ndarray
    valid: np.ndarray
    first_match_rank: np.ndarray
    protocol: str = "market"
    ap_mode: str = "standard"
    extra: dict = field(default_factory=dict)

    @property
    def num_valid(self) -> int:
        return int(self.valid.sum())

    def summary(self, ranks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
        """``{"rank1": .., "rank5": .., "rank10": .., "mAP": .., "mINP": ..}``."""
        out = {f"rank{k}": float(self.cmc[k - 1]) for k in ranks if k <= len(self.cmc)}
        out.update(mAP=float(self.mAP), mINP=float(self.mINP))
        return out


def _as_tensor(x, device=None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
    return t if device is None else t.to(device)


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto`` -> ``numba`` for CPU distances when numba is installed, else ``torch``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}'{suggestion(backend, BACKENDS)}")
    if backend == "numba" and not HAVE_NUMBA:
        raise ImportError("backend='numba' needs numba: pip install 'reid[fast]'")
    if backend == "auto":
        return "numba" if HAVE_NUMBA and device.type == "cpu" else "torch"
    return backend


class GalleryIndex:
    """Gallery labels grouped by pid, built once per gallery (NumPy and torch on ``device``).

    ``lookup(q_pids) -> (start, count)``: each query pid's block in ``order`` (count 0: absent).
    """

    def __init__(self, g_pids, g_camids, device):
        self.gp = _as_tensor(g_pids, device).long().reshape(-1)
        self.gc = _as_tensor(g_camids, device).long().reshape(-1)
        if len(self.gp) != len(self.gc):
            raise ValueError(f"g_pids ({len(self.gp)}) and g_camids ({len(self.gc)}) differ in length")
        self.order = torch.argsort(self.gp, stable=True)
        self.uniq, self.counts = torch.unique_consecutive(self.gp[self.order], return_counts=True)
        self.starts = torch.cumsum(self.counts, 0) - self.counts
        self._np = None

    def lookup(self, q_pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.uniq) == 0:
            z = torch.zeros_like(q_pids)
            return z, z
        pos = torch.searchsorted(self.uniq, q_pids).clamp(max=len(self.uniq) - 1)
        found = self.uniq[pos] == q_pids
        return self.starts[pos], torch.where(found, self.counts[pos], torch.zeros_like(pos))

    def numpy(self):
        if self._np is None:
            self._np = (self.gc.cpu().numpy(), self.order.cpu().numpy())
        return self._np


def _stats_numba(dist: torch.Tensor, qp, qc, index: GalleryIndex, use_cam: bool) -> dict[str, np.ndarray]:
    d = dist.numpy() if isinstance(dist, torch.Tensor) else dist
    d = np.ascontiguousarray(d)
    if d.dtype not in (np.float32, np.float64):
        d = d.astype(np.float64)
    start, count = index.lookup(qp)
    gc, order = index.numpy()
    nq = d.shape[0]
    out = {"npos": np.zeros(nq, np.int64), "first": np.zeros(nq, np.int64), "ap": np.zeros(nq),
           "ap_trap": np.zeros(nq), "inp": np.zeros(nq)}
    market_stats(d, qp.cpu().numpy(), qc.cpu().numpy(), gc, order, start.cpu().numpy(), count.cpu().numpy(),
                 bool(use_cam), out["npos"], out["first"], out["ap"], out["ap_trap"], out["inp"])
    return out


def _stats_torch(dist: torch.Tensor, qp, qc, index: GalleryIndex, use_cam: bool,
                 chunk_elems: int = 1 << 22) -> dict[str, np.ndarray]:
    """Vectorised form of the same computation (sort the true matches, ``searchsorted`` every
    gallery distance into them, histogram, cumulative sum); runs on ``dist``'s device."""
    nq, ng = dist.shape
    dev = dist.device
    gp = index.gp
    start, count = index.lookup(qp)
    parts: list[dict[str, torch.Tensor]] = []
    bsz = max(1, chunk_elems // max(ng, 1))
    for s in range(0, nq, bsz):
        d = dist[s:s + bsz]
        b = d.shape[0]
        m = int(count[s:s + bsz].max()) if b else 0
        if m == 0:
            z = torch.zeros(b, dtype=torch.float64, device=dev)
            parts.append({"npos": torch.zeros(b, dtype=torch.int64, device=dev),
                          "first": torch.full((b,), -1, dtype=torch.int64, device=dev),
                          "ap": z, "ap_trap": z, "inp": z})
            continue
        ar = torch.arange(m, device=dev)
        inb = ar[None, :] < count[s:s + bsz, None]
        gidx = index.order[(start[s:s + bsz, None] + ar[None, :]).clamp(max=ng - 1)]
        ok = inb
        if use_cam:
            ok = ok & (index.gc[gidx] != qc[s:s + bsz, None])
        pd = torch.gather(d, 1, gidx)
        pd = torch.where(ok, pd, torch.full_like(pd, float("inf")))
        # true matches in ranking order: by distance, ties by gallery index (gidx ascends in a row)
        sp, si = torch.sort(pd, dim=1, stable=True)
        sg = torch.gather(gidx, 1, si)
        npos = ok.sum(1)
        # bin j of a negative = number of true matches ranked before it (closer, or as close and
        # earlier in the gallery): it precedes matches j..m-1
        sp = sp.contiguous()
        j = torch.searchsorted(sp, d.contiguous(), right=True)  # matches at most as far
        # tied: the last of those is exactly as far (a -inf column in front for j = 0)
        neg = gp[None, :] != qp[s:s + bsz, None]
        tied = (torch.gather(torch.cat([torch.full_like(sp[:, :1], -float("inf")), sp], 1), 1, j) == d) & neg
        rows = torch.nonzero(tied.any(1))[:, 0]
        if len(rows):
            # the tie's run of equal match distances has ascending gallery indices: search the
            # (run, gallery index) keys of the rows with ties for each entry's run and own index
            sr = sp[rows]
            run = torch.cumsum(torch.cat([torch.zeros_like(sr[:, :1], dtype=torch.int64),
                                          (sr[:, 1:] != sr[:, :-1]).long()], 1), 1)
            key = run * (ng + 1) + sg[rows]
            jr = j[rows]
            own = torch.gather(torch.cat([run[:, :1], run], 1), 1, jr) * (ng + 1) + torch.arange(ng, device=dev)
            j[rows] = torch.where(tied[rows], torch.searchsorted(key, own, right=False), jr)
        j = torch.where(neg, j, torch.full_like(j, m + 1))
        bins = j + (torch.arange(b, device=dev) * (m + 2))[:, None]
        hist = torch.bincount(bins.reshape(-1), minlength=b * (m + 2)).view(b, m + 2)[:, :m]
        rank = (ar[None, :] + 1 + torch.cumsum(hist, 1)).double()
        i = ar[None, :].double()
        okm = ar[None, :] < npos[:, None]
        zero = torch.zeros_like(rank)
        prec = torch.where(okm, (i + 1) / rank, zero)
        old = torch.where(rank > 1, i / (rank - 1).clamp(min=1), torch.ones_like(rank))
        trap = torch.where(okm, (old + prec) / 2, zero)
        n = npos.double()
        last = torch.gather(rank, 1, (npos - 1).clamp(min=0)[:, None])[:, 0]
        has = npos > 0
        parts.append({
            "npos": npos,
            "first": torch.where(has, rank[:, 0].long(), torch.full_like(npos, -1)),
            "ap": torch.where(has, prec.sum(1) / n.clamp(min=1), n * 0),
            "ap_trap": torch.where(has, trap.sum(1) / n.clamp(min=1), n * 0),
            "inp": torch.where(has, n / last, n * 0),
        })
    return {k: torch.cat([p[k] for p in parts]).cpu().numpy() for k in parts[0]} if parts else {
        k: np.zeros(0) for k in ("npos", "first", "ap", "ap_trap", "inp")}


def query_stats(dist, qp, qc, index: GalleryIndex, use_cam: bool, backend: str = "auto") -> dict[str, np.ndarray]:
    """Per-query ``npos`` (kept true matches), ``first`` (1-based first-match rank, -1 if none),
    ``ap``, ``ap_trap`` (official Market-1501 trapezoidal AP) and ``inp``, each [Nq]."""
    if resolve_backend(backend, dist.device) == "numba":
        return _stats_numba(dist.cpu(), qp, qc, index, use_cam)
    return _stats_torch(dist, qp, qc, index, use_cam)


def _labels(x, n: int, name: str, device) -> torch.Tensor:
    t = _as_tensor(x, device).long().reshape(-1)
    if len(t) != n:
        raise ValueError(f"{name} has {len(t)} entries, expected {n}")
    return t


def _check(protocol: str | Protocol, ap_mode: str) -> Protocol:
    """The :class:`Protocol` named ``protocol``; ValueErrors with the closest valid name."""
    if ap_mode not in AP_MODES:
        raise ValueError(f"unknown ap_mode '{ap_mode}'{suggestion(ap_mode, AP_MODES)}")
    return get_protocol(protocol)


def evaluate_rank(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    protocol: str | Protocol = "market",
    ap_mode: str = "standard",
    junk_pids: tuple[int, ...] | None = None,
    num_repeats: int | None = None,
    seed: int = 0,
    backend: str = "auto",
    where: str = "",
    stage: str = "distances",
) -> RankResult:
    """CMC, mAP, mINP of a query x gallery distance matrix (smaller is closer).

    distmat [Nq, Ng] and the label vectors [Nq] / [Ng] may be NumPy arrays or torch tensors on
    any device.

    protocol: a :class:`~reid.data.protocols.Protocol` or its name: ``market`` (gallery images with
    the query's pid AND camera are removed; queries without a remaining true match are skipped),
    ``hands`` (nothing removed) or ``cuhk03`` (the market removal, then classic single-gallery-shot
    CMC: one random gallery image per identity, averaged over ``num_repeats`` draws, default the
    protocol's ``single_gallery_shot`` (10), seeded by ``seed``; AP/INP use the whole kept gallery).
    ap_mode: ``standard`` (mean precision at each true match, as torchreid/fast-reid) or
    ``trapezoid`` (the official Market-1501 MATLAB code's AP).
    junk_pids: gallery images with these pids are removed for every query (e.g. ``(-1,)`` as in
    the official Market-1501 code); by default every gallery image is kept (torchreid/fast-reid).
    backend: ``auto`` uses the compiled numba kernel (parallel over queries) for CPU input when
    numba is installed (``pip install 'reid[fast]'``), else the vectorised torch code (also the
    CUDA path); both give identical results.
    ``cmc`` always has ``max_rank`` entries; where the gallery is shorter, the ranks beyond it
    repeat the last value (torchreid truncates to the gallery size; the common entries agree).
    Equal distances rank in gallery order (a stable argsort). NaN or infinite distances raise a
    :class:`~reid.evaluation.finite.NonFiniteError` naming ``where`` (e.g. the data set) and
    ``stage`` (``distances`` or ``re-ranked distances``: what the matrix is).
    """
    rules = _check(protocol, ap_mode)
    dist = _as_tensor(distmat)
    if dist.ndim != 2:
        raise ValueError(f"distmat must be [Nq, Ng], got shape {tuple(dist.shape)}")
    check_finite(dist, _named(where, stage), stage, rows="query rows")
    if not dist.is_floating_point():
        dist = dist.double()
    dev = dist.device
    nq, ng = dist.shape
    qp = _labels(q_pids, nq, "q_pids", dev)
    qc = _labels(q_camids, nq, "q_camids", dev)
    gp = _labels(g_pids, ng, "g_pids", dev)
    gc = _labels(g_camids, ng, "g_camids", dev)
    if junk_pids:
        keep = ~torch.isin(gp, torch.as_tensor(list(junk_pids), device=dev))
        dist, gp, gc = dist[:, keep], gp[keep], gc[keep]
    index = GalleryIndex(gp, gc, dev)
    stats = query_stats(dist, qp, qc, index, rules.cross_camera, backend)
    cmc_rows = None
    if rules.single_gallery_shot:
        cmc_rows = Cuhk03Draws(index, num_repeats or rules.single_gallery_shot, seed).cmc(dist, qp, qc, max_rank)
    return finalize(stats, max_rank, rules.name, ap_mode, cmc_rows)


def _named(where: str, what: str) -> str:
    return f"{where}: {what}" if where else what


def finalize(stats: dict[str, np.ndarray], max_rank: int, protocol: str, ap_mode: str,
             cmc_rows: np.ndarray | None = None) -> RankResult:
    """A :class:`RankResult` from per-query statistics (:func:`query_stats`, concatenated over
    query chunks) and, for single-gallery-shot protocols, the per-query CMC rows [Nq, max_rank]."""
    valid = stats["npos"] > 0
    if not valid.any():
        raise ValueError("no query has a true match in the gallery: nothing to evaluate")
    first = stats["first"]
    if cmc_rows is not None:
        cmc = cmc_rows[valid].mean(0)
    else:
        hist = np.bincount(np.clip(first[valid] - 1, 0, max_rank), minlength=max_rank + 1)[:max_rank]
        cmc = np.cumsum(hist) / valid.sum()
    ap = (stats["ap_trap"] if ap_mode == "trapezoid" else stats["ap"])[valid]
    inp = stats["inp"][valid]
    return RankResult(
        cmc=np.asarray(cmc, dtype=np.float64), mAP=float(ap.mean()), mINP=float(inp.mean()), ap=ap, inp=inp,
        valid=valid, first_match_rank=np.where(valid, first, -1), protocol=protocol, ap_mode=ap_mode,
    )


class Cuhk03Draws:
    """The seeded single-gallery-shot draws of the CUHK03 protocol, shared by all query chunks.

    Each draw gives every gallery image a random key; per identity the image with the smallest
    key among the eligible ones is drawn (for the query's own identity: among its images from
    other cameras), i.e. a uniform choice. A query's first-match rank in a draw is 1 + the number
    of other identities whose drawn image is ranked before its drawn true match (closer, or as
    close and earlier in the gallery).
    """

    def __init__(self, index: GalleryIndex, num_repeats: int = 10, seed: int = 0):
        self.index = index
        dev = index.gp.device
        gen = torch.Generator().manual_seed(seed)
        ng = len(index.gp)
        self.ids, inv = torch.unique(index.gp, return_inverse=True)
        nid = len(self.ids)
        self.keys, self.reps = [], []
        for _ in range(num_repeats):
            key = torch.rand(ng, generator=gen, dtype=torch.float64).to(dev)
            best = torch.full((nid,), 2.0, dtype=torch.float64, device=dev).scatter_reduce(0, inv, key, "amin")
            is_best = key == best[inv]
            rep = torch.zeros(nid, dtype=torch.int64, device=dev)
            rep[inv[is_best]] = torch.arange(ng, device=dev)[is_best]
            self.keys.append(key)
            self.reps.append(rep)

    def cmc(self, dist: torch.Tensor, qp: torch.Tensor, qc: torch.Tensor, max_rank: int,
            chunk: int = 512) -> np.ndarray:
        """Per-query single-shot CMC [Nq, max_rank], averaged over the draws (0 for no match)."""
        nq = dist.shape[0]
        dev = dist.device
        gp, gc = self.index.gp, self.index.gc
        nid = len(self.ids)
        q_id = torch.searchsorted(self.ids, qp).clamp(max=max(nid - 1, 0))
        ks = torch.arange(1, max_rank + 1)
        out = np.zeros((nq, max_rank))
        for s in range(0, nq, chunk):
            d = dist[s:s + chunk]
            b = d.shape[0]
            elig = (gp[None, :] == qp[s:s + b, None]) & (gc[None, :] != qc[s:s + b, None])
            has = elig.any(1)
            own = torch.arange(nid, device=dev)[None, :] == q_id[s:s + b, None]
            acc = torch.zeros(b, max_rank, dtype=torch.float64)
            for key, rep in zip(self.keys, self.reps):
                k = torch.where(elig, key[None, :], torch.full((), 3.0, dtype=key.dtype, device=dev))
                gpos = torch.argmin(k, 1)[:, None]
                dpos = torch.gather(d, 1, gpos)
                # ranked before the drawn true match: closer, or as close and earlier in the gallery
                dr = d[:, rep]
                closer = ((dr < dpos) | ((dr == dpos) & (rep[None, :] < gpos))) & ~own
                rank = (closer.sum(1) + 1).cpu()
                acc += (ks[None, :] >= rank[:, None]).double()
            acc[~has.cpu()] = 0
            out[s:s + b] = (acc / len(self.keys)).numpy()
        return out


@torch.inference_mode()
def evaluate_features(
    qf,
    gf,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    metric: str = "cosine",
    max_rank: int = 50,
    protocol: str | Protocol = "market",
    ap_mode: str = "standard",
    device: str | torch.device | None = None,
    chunk_size: int | None = None,
    max_chunk_bytes: int = 256 << 20,
    num_repeats: int | None = None,
    seed: int = 0,
    backend: str = "auto",
    dist_fn=None,
    where: str = "",
    stage: str = "distances",
) -> RankResult:
    """:func:`evaluate_rank` from features qf [Nq, D], gf [Ng, D] without the full distance matrix.

    Distances are computed on ``device`` (default: ``qf``'s) for ``chunk_size`` queries at a time
    (default: as many as fit ``max_chunk_bytes`` of distances) and ranked chunk by chunk; peak
    memory is the gallery features plus one chunk. ``dist_fn(q_index [B]) -> [B, Ng]`` replaces
    the feature distances (e.g. re-ranked ones, see :func:`reid.evaluation.re_rank_features`).
    Results are identical to ``evaluate_rank(compute_distance(qf, gf, metric), ...)``. NaN or
    infinite features or distances (``stage`` names what ``dist_fn`` gives) raise a
    :class:`~reid.evaluation.finite.NonFiniteError` naming ``where`` and the stage.
    """
    rules = _check(protocol, ap_mode)
    qf = torch.as_tensor(qf)
    check_finite(qf, _named(where, "query features"), "features", rows="query rows")
    check_finite(torch.as_tensor(gf), _named(where, "gallery features"), "features", rows="gallery rows")
    dev = torch.device(device) if device is not None else qf.device
    nq = len(qf)
    prepared = PreparedGallery(torch.as_tensor(gf).to(dev), metric) if dist_fn is None else None
    ng = len(gf)
    qp = _labels(q_pids, nq, "q_pids", dev)
    qc = _labels(q_camids, nq, "q_camids", dev)
    index = GalleryIndex(_labels(g_pids, ng, "g_pids", dev), _labels(g_camids, ng, "g_camids", dev), dev)
    repeats = num_repeats or rules.single_gallery_shot
    draws = Cuhk03Draws(index, repeats, seed) if rules.single_gallery_shot else None
    if chunk_size is None:
        chunk_size = max(1, max_chunk_bytes // (4 * max(ng, 1)))
    parts, cmc_parts = [], []
    for s in range(0, nq, chunk_size):
        if dist_fn is None:
            d = prepared(qf[s:s + chunk_size])
        else:
            d = torch.as_tensor(dist_fn(torch.arange(s, min(s + chunk_size, nq)))).to(dev)
        check_finite(d, _named(where, stage if dist_fn is not None else "distances"),
                     stage if dist_fn is not None else "distances", rows="query rows", offset=s, total=nq)
        parts.append(query_stats(d, qp[s:s + chunk_size], qc[s:s + chunk_size], index, rules.cross_camera, backend))
        if draws is not None:
            cmc_parts.append(draws.cmc(d, qp[s:s + chunk_size], qc[s:s + chunk_size], max_rank))
        del d
    stats = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return finalize(stats, max_rank, rules.name, ap_mode, np.concatenate(cmc_parts) if draws is not None else None)
