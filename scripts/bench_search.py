#!/usr/bin/env python
"""Benchmark of reid.inference.topk_search on a large synthetic gallery (time and memory), and of
the faiss indexes of reid.inference.index beside it (``--index``).

    OMP_NUM_THREADS=1 python scripts/bench_search.py                  # 1,000,000 x 512, 10 queries
    python scripts/bench_search.py --gallery 200000 --chunks 4096 65536 --mmap
    OMP_NUM_THREADS=1 python scripts/bench_search.py --queries 1000 --index flat ivf:nprobe=8/16/32 \
        ivfpq:nprobe=8/16/32 hnsw:ef_search=32/64/128

``--index KIND[:NAME=V,NAME=V1/V2/...]`` (parameters of reid.inference.index; ``/`` lists search-time
values, ``nprobe`` / ``ef_search`` / ``refine``, each one a row of the same built index) switches to a clustered
gallery (see :func:`clustered_blocks`) and prints one table: the exact chunked search, then each
index: build time, query time per query (all queries in one call, ``--threads`` threads for torch
and faiss alike), memory (the serialised index's bytes; the peak of the process's anonymous
resident memory during the build minus its value before, memory-mapped gallery pages not counted;
memory freed by an earlier index and reused is not counted again) and recall@1 / recall@10 against the
exact result (recall@k: the share of the exact top-k found in the index's top-k; @1: top-1 equal; "ties
0.01": the share of the index's top-k within 0.01 cosine of the exact k-th match or nearer). Before the
table it prints how re-ID-like the gallery is (:func:`data_report`).

The gallery (float32, random unit vectors; seeded) is built in memory chunk by chunk (``--mmap``:
written to a temporary .npy and searched through a read-only memory map). Each chunk size is run
``--repeats`` times (best time reported); memory is the process's resident set sampled every 2 ms
during the search, minus its size before the search (the gallery itself is not counted), beside the
bound stated in ``topk_search``'s docstring. The result of every chunk size is checked equal to the
first one's.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from reid.inference.search import topk_search


def rss_mb() -> float:
    """Resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


class PeakRss:
    """Context manager: ``.extra`` = peak resident MB while inside, minus the resident MB at entry
    (``read``: the reading sampled, by default :func:`rss_mb`)."""

    def __init__(self, read=None):
        self.read = read or rss_mb

    def __enter__(self):
        self.start = self.peak = self.read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.read())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.read())
        self.extra = self.peak - self.start


def rss_anon_mb() -> float:
    """Anonymous resident memory of this process in MB (heap, not memory-mapped file pages; Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def clustered_blocks(n: int, d: int, per_id: int, intrinsic: int, spread: float, noise: float, query_ids: np.ndarray,
                     seed: int = 0, ids_per_block: int = 8192):
    """Yield (start row, gallery rows [B, D] float32 unit vectors, query rows [b, D]) of a synthetic
    gallery of ``n`` rows: identity ``i`` owns rows ``i * per_id ... i * per_id + per_id - 1``; its
    centre is a Gaussian point of an ``intrinsic``-dimensional subspace (a fixed random orthonormal
    basis of R^D; ``intrinsic = 0``: all of R^D), each image is the centre plus Gaussian noise of
    ``spread`` times the centre's scale in that subspace plus isotropic noise ``noise`` in R^D,
    L2-normalised. The queries are held-out images of identities ``query_ids`` (sorted), drawn
    the same way, one each, yielded with the block that holds their identity."""
    g = torch.Generator().manual_seed(seed)
    r = intrinsic or d
    basis = torch.linalg.qr(torch.randn(d, r, generator=g))[0] if intrinsic else None  # [D, r]
    n_ids = -(-n // per_id)
    for first in range(0, n_ids, ids_per_block):
        ids = torch.arange(first, min(n_ids, first + ids_per_block))
        centres = torch.randn(len(ids), r, generator=g)
        rows = centres.repeat_interleave(per_id, 0)
        rows = rows + spread * torch.randn(rows.shape, generator=g)
        qpick = query_ids[(query_ids >= int(ids[0])) & (query_ids <= int(ids[-1]))] - first
        q = centres[torch.from_numpy(qpick)] + spread * torch.randn(len(qpick), r, generator=g)
        start = first * per_id
        rows, q = rows[:n - start], q
        out = []
        for x in (rows, q):
            x = x @ basis.T if basis is not None else x
            x = x / np.sqrt(r) + noise * torch.randn(x.shape, generator=g) / np.sqrt(d)
            out.append(torch.nn.functional.normalize(x, dim=1).numpy())
        yield start, out[0], out[1]


#: recall@k with ties: the share of an index's top-k whose exact cosine is at least the exact k-th
#: match's minus TIE (a near-tie swapped at the k-th place is not counted as missed).
TIE = 0.01


def parse_spec(spec: str) -> tuple[str, dict[str, int | str], list[dict[str, int]]]:
    """``"ivfpq:nlist=1024,nprobe=8/16,refine=4,refine_codes=sq8"`` -> (kind, build parameters, one
    dict per search setting of :data:`reid.inference.index.SEARCH_PARAMS`)."""
    from reid.inference.index import CHOICES, SEARCH_PARAMS

    kind, _, rest = spec.partition(":")
    params: dict[str, int | str] = {}
    sweep: list[dict[str, int]] = [{}]
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key in CHOICES:
            params[key] = value
            continue
        values = [int(v) for v in value.split("/")]
        if key in SEARCH_PARAMS:
            sweep = [{**s, key: v} for s in sweep for v in values]
            params.setdefault(key, values[0])
        else:
            params[key] = values[0]
    return kind, params, sweep


def compare(args) -> int:
    """The exact chunked search and each ``--index`` on one clustered gallery: one table."""
    from reid.inference.index import GalleryIndex, import_faiss

    faiss = import_faiss()
    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    n, d, k = args.gallery, args.dim, args.topk
    rng = np.random.default_rng(1)
    query_ids = np.sort(rng.choice(-(-n // args.per_id), args.queries, replace=False))
    print(f"faiss {faiss.__version__}, torch {torch.__version__}, {args.threads} thread(s); gallery {n:,} x {d} "
          f"float32 ({n * d * 4 / 2**30:.2f} GiB{', memory-mapped' if args.mmap else ''}), {args.per_id} images "
          f"per identity, intrinsic dimension {args.intrinsic or d}, spread {args.spread}, noise {args.noise}; "
          f"{args.queries} queries (held-out images of gallery identities), top-{k}")
    tmp = None
    t0 = time.perf_counter()
    if args.mmap:
        tmp = tempfile.TemporaryDirectory(prefix="bench_search-", dir=args.tmp)
        path = Path(tmp.name) / "gallery.npy"
        gallery = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    else:
        gallery = np.empty((n, d), np.float32)
    queries = []
    for start, rows, q in clustered_blocks(n, d, args.per_id, args.intrinsic, args.spread, args.noise, query_ids):
        gallery[start:start + len(rows)] = rows
        queries.append(q)
    query = np.concatenate(queries)
    if args.mmap:
        gallery.flush()
        del gallery
        gallery = np.load(path, mmap_mode="r")
    print(f"gallery generated in {time.perf_counter() - t0:.1f} s; anonymous resident {rss_anon_mb():.0f} MB")
    topk_search(query[:2], gallery[:4096], k, chunk_size=1024)  # warm-up
    deep = k + args.per_id  # deep enough to see every image of the query's identity and the best others
    with PeakRss() as mem:
        t = time.perf_counter()
        exact_d, exact_i = topk_search(query, gallery, deep, chunk_size=args.chunks[0])
        exact_s = time.perf_counter() - t
    exact_cos, exact_i = 1 - exact_d.numpy(), exact_i.numpy()
    own = exact_i // args.per_id == query_ids[:, None]
    print(f"exact top-{k}: {own[:, :k].mean():.3f} of the matches are the query's identity; cos of the 1st / {k}th "
          f"match {exact_cos[:, 0].mean():.3f} / {exact_cos[:, k - 1].mean():.3f}")
    print(data_report(query, gallery, query_ids, args.per_id, exact_cos, own, k))
    exact_i = exact_i[:, :k]
    head = (f"| search | build s | ms / query | queries / s | x exact | index MB | build RSS MB | recall@1 | "
            f"recall@{k} | recall@{k} ties {TIE} |")
    print(head + "\n|" + " --- |" * 10)
    exact_qps = len(query) / exact_s
    print(f"| exact chunked (topk_search, chunk {args.chunks[0]}) | - | {1000 * exact_s / len(query):.2f} | "
          f"{exact_qps:.1f} | 1 | {n * d * 4 / 2**20:.0f} (features) | {mem.extra:.0f} | 1 | 1 | 1 |", flush=True)
    for spec in args.index:
        kind, params, sweep = parse_spec(spec)
        with PeakRss(rss_anon_mb) as mem:
            t = time.perf_counter()
            index = GalleryIndex.build(gallery, kind, params)
            build_s = time.perf_counter() - t
        grown = mem.extra
        size = index.nbytes() / 2**20
        for setting in sweep:
            index.configure(**setting)
            index.search(query[:2], k)  # warm-up
            t = time.perf_counter()
            _, got = index.search(query, k)
            s = time.perf_counter() - t
            r1 = np.mean(got[:, 0] == exact_i[:, 0])
            rk = np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(got, exact_i)])
            flat = got.ravel()
            order = np.argsort(flat)  # a memory map reads sorted rows fastest
            rows = np.empty((len(flat), d), np.float32)
            rows[order] = gallery[flat[order].clip(min=0)]
            found = np.einsum("qd,qkd->qk", query, rows.reshape(*got.shape, d))
            tied = np.mean((found >= exact_cos[:, k - 1:k] - TIE) & (got >= 0))  # -1: fewer than k found
            off = {"spherical"} if not index.params.get("spherical") else set()
            off |= {"refine", "refine_codes"} if not index.params.get("refine") else set()
            off |= {"codes"} if index.params.get("codes") == "flat" else set()  # the default graph: as before
            shown = {a: b for a, b in {**index.params, **setting}.items() if a not in off}  # stages off: not shown
            name = kind + (" " + " ".join(f"{a}={b}" for a, b in shown.items()) if shown else "")
            print(f"| {name} | {build_s:.1f} | {1000 * s / len(query):.3f} | {len(query) / s:.0f} | "
                  f"{len(query) / s / exact_qps:.0f} | {size:.0f} | {grown:.0f} | {r1:.3f} | {rk:.3f} | "
                  f"{tied:.3f} |", flush=True)
        del index
    if tmp is not None:
        del gallery
        tmp.cleanup()
    return 0


def data_report(query: np.ndarray, gallery: np.ndarray, query_ids: np.ndarray, per_id: int, cos: np.ndarray,
                own: np.ndarray, k: int) -> str:
    """How re-ID-like the gallery is and how tied the exact top-``k`` is: the cosine of a query with
    its own identity's gallery images and with the best other identity's (from the exact top
    ``cos`` [Q, k + per_id], ``own`` [Q, k + per_id] its identity mask), and the gap between the
    exact ``k``-th and ``k+1``-th similarity (a gap below 0.01 makes the ``k``-th match a near-tie
    that recall@k counts as missed when an index swaps it)."""
    rows = (query_ids[:, None] * per_id + np.arange(per_id)).clip(max=len(gallery) - 1)
    same = np.einsum("qd,qpd->qp", query, np.asarray(gallery[rows.ravel()]).reshape(*rows.shape, -1))
    other = np.where(own, -np.inf, cos).max(axis=1)
    gap = cos[:, k - 1] - cos[:, k]
    return (f"cos with its own identity's images: mean {same.mean():.3f}, 5th percentile {np.percentile(same, 5):.3f}; "
            f"with the nearest other identity: mean {other.mean():.3f}, 95th percentile "
            f"{np.percentile(other, 95):.3f}; gap between the exact {k}th and {k + 1}th match: median "
            f"{np.median(gap):.4f}, below 0.01 for {np.mean(gap < 0.01):.2f} of the queries")


def make_gallery(n: int, d: int, seed: int, out: np.ndarray, block: int = 65536) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    for s in range(0, n, block):
        x = torch.randn(min(block, n - s), d, generator=g)
        out[s:s + len(x)] = torch.nn.functional.normalize(x, dim=1).numpy()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--gallery", type=int, default=1_000_000, help="gallery rows")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--chunks", type=int, nargs="+", default=[4096, 16384, 65536])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mmap", action="store_true", help="search a read-only memory-mapped .npy file")
    parser.add_argument("--index", nargs="+", metavar="KIND[:NAME=V,...]",
                        help="compare faiss indexes with the exact search on a clustered gallery")
    parser.add_argument("--per-id", type=int, default=10, help="--index: gallery images per identity")
    parser.add_argument("--intrinsic", type=int, default=64,
                        help="--index: dimension of the subspace identities vary in (0: all D)")
    parser.add_argument("--spread", type=float, default=0.7, help="--index: image noise / centre scale")
    parser.add_argument("--noise", type=float, default=0.3, help="--index: isotropic noise in R^D")
    parser.add_argument("--threads", type=int, default=1, help="--index: threads of torch and faiss")
    parser.add_argument("--tmp", default=None, help="--mmap: folder of the temporary gallery file")
    args = parser.parse_args()
    if args.index:
        return compare(args)
    n, d, q = args.gallery, args.dim, args.queries
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); gallery {n:,} x {d} float32 "
          f"({n * d * 4 / 2**30:.2f} GiB), {q} queries, top-{args.topk}")
    tmp = None
    t0 = time.perf_counter()
    if args.mmap:
        tmp = tempfile.TemporaryDirectory(prefix="bench_search-")
        path = Path(tmp.name) / "gallery.npy"
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
        make_gallery(n, d, 0, mm)
        mm.flush()
        del mm
        gallery = np.load(path, mmap_mode="r")
    else:
        gallery = make_gallery(n, d, 0, np.empty((n, d), np.float32))
    print(f"gallery built in {time.perf_counter() - t0:.1f} s; resident {rss_mb():.0f} MB")
    query = torch.nn.functional.normalize(torch.randn(q, d, generator=torch.Generator().manual_seed(1)), dim=1)
    topk_search(query, gallery[:4096], args.topk, chunk_size=1024)  # warm-up: lazy library loading, allocator
    first = None
    print(f"{'chunk':>8} {'best s':>8} {'Mrows/s':>8} {'extra MB':>9} {'bound MB':>9}")
    for chunk in args.chunks:
        times, extra = [], 0.0
        for _ in range(args.repeats):
            with PeakRss() as mem:
                t = time.perf_counter()
                dist, idx = topk_search(query, gallery, args.topk, chunk_size=chunk)
                times.append(time.perf_counter() - t)
            extra = max(extra, mem.extra)
        if first is None:
            first = idx
        assert torch.equal(idx, first), f"chunk {chunk}: a different top-k"
        bound = (4 * chunk * (d + 2 * q + 1) + 48 * q * args.topk) / 2**20
        print(f"{chunk:>8} {min(times):>8.2f} {n / min(times) / 1e6:>8.2f} {extra:>9.1f} {bound:>9.1f}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
