"""Optional numba kernels (``pip install reid[fast]``). ``HAVE_NUMBA`` tells whether they exist."""
from __future__ import annotations

import numpy as np

try:  # pragma: no cover - exercised when numba is installed
    import numba

    HAVE_NUMBA = True
    prange = numba.prange
except ImportError:  # pragma: no cover
    numba = None
    HAVE_NUMBA = False
    prange = range


LINEAR_MAX = 48


def _count_le_py(p, pi, n, v, g):
    """Number of entries of ``(p, pi)[:n]`` (sorted by distance, then gallery index) that come
    before or at ``(v, g)`` in that order (binary search)."""
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if p[mid] < v or (p[mid] == v and pi[mid] <= g):
            lo = mid + 1
        else:
            hi = mid
    return lo


_count_le = numba.njit(inline="always")(_count_le_py) if HAVE_NUMBA else _count_le_py


def _count_below_py(row, thr):
    """#{g: row[g] < thr}, accumulated in float32 (exact below 2**24 entries) so that the loop
    vectorises as a float reduction."""
    c = np.float32(0.0)
    for g in range(row.shape[0]):
        c += np.float32(1.0) if row[g] < thr else np.float32(0.0)
    return c


def _count_at_most_py(row, thr):
    """#{g: row[g] <= thr}, as :func:`_count_below_py`."""
    c = np.float32(0.0)
    for g in range(row.shape[0]):
        c += np.float32(1.0) if row[g] <= thr else np.float32(0.0)
    return c


# reassociation lets LLVM vectorise the reduction; no "nnan": NaN distances compare as usual
_FAST = {"reassoc", "nsz", "contract"}
_count_below = numba.njit(fastmath=_FAST)(_count_below_py) if HAVE_NUMBA else _count_below_py
_count_at_most = numba.njit(fastmath=_FAST)(_count_at_most_py) if HAVE_NUMBA else _count_at_most_py


def _count_before_py(row, thr, idx):
    """#{g: (row[g], g) < (thr, idx)}: entries closer than ``thr``, or as close and earlier in the
    gallery. Two vectorised passes over slices (one loop with both conditions does not vectorise)."""
    return _count_at_most(row[:idx], thr) + _count_below(row[idx:], thr)


_count_before = numba.njit(_count_before_py) if HAVE_NUMBA else _count_before_py


def _market_stats_py(dist, qp, qc, gc, order, start, count, use_cam, npos, first, ap, ap_trap, inp):
    """Per query: number of kept true matches, first-match rank, AP, trapezoidal AP, INP.

    dist [Nq, Ng] (float32/64), qp/qc [Nq], gc [Ng], order [Ng] gallery indices grouped by pid
    (ascending within a pid), start/count [Nq] the query pid's block in ``order``. Outputs [Nq]
    filled in place. The gallery is ranked by (distance, gallery index), the order of a stable
    argsort: a negative precedes a true match when closer, or as close and earlier in the gallery.
    """
    nq, ng = dist.shape
    for q in prange(nq):
        c = count[q]
        npos[q] = 0
        first[q] = -1
        ap[q] = 0.0
        ap_trap[q] = 0.0
        inp[q] = 0.0
        if c == 0:
            continue
        pos = np.empty(c, dist.dtype)
        posi = np.empty(c, np.int64)
        same = np.empty(c, dist.dtype)
        n = 0
        for t in range(c):
            g = order[start[q] + t]
            v = dist[q, g]
            same[t] = v
            if not (use_cam and gc[g] == qc[q]):
                pos[n] = v
                posi[n] = g
                n += 1
        if n == 0:
            continue
        # true matches in ranking order: by distance, ties by gallery index (posi is ascending)
        srt = np.argsort(pos[:n], kind="mergesort")
        p = pos[:n][srt]
        pi = posi[:n][srt]
        dmax = p[n - 1]
        imax = pi[n - 1]
        # hist[j]: negatives ranked after exactly j true matches
        hist = np.zeros(n + 1, np.int64)
        row = dist[q]
        if n <= LINEAR_MAX and ng < (1 << 24):
            # one vectorisable counting pass per true match: below[t] = #{g ranked before match t}
            prev = 0
            for t in range(n):
                cnt = np.int64(_count_before(row, p[t], pi[t]))
                hist[t] = cnt - prev
                prev = cnt
        else:
            for g in range(ng):
                v = row[g]
                if v < dmax or (v == dmax and g < imax):
                    hist[_count_le(p, pi, n, v, g)] += 1
        # the counts above include the query's own pid (true matches and removed images)
        for t in range(c):
            v = same[t]
            g = order[start[q] + t]
            if v < dmax or (v == dmax and g < imax):
                hist[_count_le(p, pi, n, v, g)] -= 1
        cum = 0
        s_ap = 0.0
        s_trap = 0.0
        r = 0
        for i in range(n):
            cum += hist[i]
            r = i + 1 + cum
            prec = (i + 1.0) / r
            s_ap += prec
            old = i / (r - 1.0) if r > 1 else 1.0
            s_trap += (old + prec) / 2.0
            if i == 0:
                first[q] = r
        npos[q] = n
        ap[q] = s_ap / n
        ap_trap[q] = s_trap / n
        inp[q] = n / r


def _jaccard_rows_py(q_rows, vptr, vidx, vval, cptr, crow, cval, out):
    """Jaccard distances out [B, Ng] between sparse encodings: rows ``q_rows`` of V (CSR vptr,
    vidx, vval) against the gallery rows (CSC of V restricted to them: cptr, crow, cval)."""
    nb, ng = out.shape
    for b in prange(nb):
        acc = out[b]
        acc[:] = 0
        i = q_rows[b]
        for e in range(vptr[i], vptr[i + 1]):
            k = vidx[e]
            v = vval[e]
            for t in range(cptr[k], cptr[k + 1]):
                acc[crow[t]] += min(v, cval[t])
        for j in range(ng):
            acc[j] = 1 - acc[j] / (2 - acc[j])


def _push_py(vals, idx, c, o, j):
    """Insert (o, j) into row ``c`` of the ascending K-smallest lists vals/idx [C, K]."""
    kk = vals.shape[1]
    if o < vals[c, kk - 1]:
        p = kk - 1
        while p > 0 and vals[c, p - 1] > o:
            vals[c, p] = vals[c, p - 1]
            idx[c, p] = idx[c, p - 1]
            p -= 1
        vals[c, p] = o
        idx[c, p] = j


_push = numba.njit(inline="always")(_push_py) if HAVE_NUMBA else _push_py


def _topk_cols_py(m, transposed, row_offset, vals, idx, colmax):
    """Merge the columns of a block of D into running K-smallest lists of float32(D ** 2)
    (vals/idx [C, K], ascending; ties: earlier row first) and running maxima colmax [C].
    Column c's values are m[:, c], or m[c, :] when ``transposed``; entry r is D row
    ``row_offset + r``. Selecting on the squares selects on O = squares / column maximum."""
    kk = vals.shape[1]
    if transposed:
        ncols, nr = m.shape
        for c in prange(ncols):
            worst = vals[c, kk - 1]
            mx = colmax[c]
            for r in range(nr):
                v = m[c, r]
                o = np.float32(v * v)
                mx = max(mx, o)
                if o < worst:
                    _push(vals, idx, c, o, row_offset + r)
                    worst = vals[c, kk - 1]
            colmax[c] = mx
    else:
        nr, ncols = m.shape
        nblk = (ncols + 511) // 512
        for b in prange(nblk):
            c0 = b * 512
            c1 = min(c0 + 512, ncols)
            for r in range(nr):
                for c in range(c0, c1):
                    v = m[r, c]
                    o = np.float32(v * v)
                    if o > colmax[c]:
                        colmax[c] = o
                    if o < vals[c, kk - 1]:
                        _push(vals, idx, c, o, row_offset + r)


def _expansion_py(nbr, k1n, khn, out, cnt, scratch):
    """k-reciprocal expansion sets: out[i, :cnt[i]] (sorted, unique) = R(i, k1n) plus each
    R(c, khn), c in R(i, k1n), that shares more than 2/3 of its members with R(i, k1n).
    R(i, k) = {j in nbr[i, :k] : i in nbr[j, :k]}. out [N, k1n * (1 + khn)], scratch [N, khn]."""
    n = nbr.shape[0]
    for i in prange(n):
        buf = out[i]
        tmp = scratch[i]
        nr1 = 0
        for t in range(k1n):
            j = nbr[i, t]
            for u in range(k1n):
                if nbr[j, u] == i:
                    buf[nr1] = j
                    nr1 += 1
                    break
        m = nr1
        for t in range(nr1):
            c = buf[t]
            size = 0
            inter = 0
            for u in range(khn):
                x = nbr[c, u]
                for w in range(khn):
                    if nbr[x, w] == c:
                        tmp[size] = x
                        size += 1
                        for z in range(nr1):
                            if buf[z] == x:
                                inter += 1
                                break
                        break
            if inter > (2.0 / 3.0) * size:
                for u in range(size):
                    buf[m] = tmp[u]
                    m += 1
        srt = np.sort(buf[:m])
        u = 0
        for t in range(m):
            if t == 0 or srt[t] != srt[t - 1]:
                buf[u] = srt[t]
                u += 1
        cnt[i] = u


def _qe_count_py(nbr, k2, vptr, vidx, counts):
    """Number of distinct columns in the union of the rows nbr[i, :k2] of CSR V, per i."""
    n = nbr.shape[0]
    for b in prange((n + 255) // 256):
        mark = np.full(vptr.shape[0], -1, np.int64)
        for i in range(b * 256, min(n, b * 256 + 256)):
            c = 0
            for t in range(k2):
                r = nbr[i, t]
                for e in range(vptr[r], vptr[r + 1]):
                    if mark[vidx[e]] != i:
                        mark[vidx[e]] = i
                        c += 1
            counts[i] = c


def _qe_fill_py(nbr, k2, vptr, vidx, vval, optr, oidx, oval):
    """Row i of the output CSR (optr from _qe_count) = mean of rows nbr[i, :k2] of CSR V."""
    n = nbr.shape[0]
    for b in prange((n + 255) // 256):
        mark = np.full(vptr.shape[0], -1, np.int64)
        acc = np.zeros(vptr.shape[0], np.float64)
        for i in range(b * 256, min(n, b * 256 + 256)):
            p = optr[i]
            for t in range(k2):
                r = nbr[i, t]
                for e in range(vptr[r], vptr[r + 1]):
                    col = vidx[e]
                    if mark[col] != i:
                        mark[col] = i
                        oidx[p] = col
                        p += 1
                    acc[col] += vval[e]
            for q in range(optr[i], optr[i + 1]):
                oval[q] = acc[oidx[q]] / k2
                acc[oidx[q]] = 0.0


if HAVE_NUMBA:
    expansion_sets = numba.njit(parallel=True, cache=True, nogil=True)(_expansion_py)
    qe_count = numba.njit(parallel=True, cache=True, nogil=True)(_qe_count_py)
    qe_fill = numba.njit(parallel=True, cache=True, nogil=True)(_qe_fill_py)
    topk_cols = numba.njit(parallel=True, cache=True, nogil=True)(_topk_cols_py)
    market_stats = numba.njit(parallel=True, cache=True, nogil=True)(_market_stats_py)
    jaccard_rows = numba.njit(parallel=True, cache=True, nogil=True)(_jaccard_rows_py)
else:  # pragma: no cover
    market_stats = None
    jaccard_rows = None
    topk_cols = None
    expansion_sets = qe_count = qe_fill = None
