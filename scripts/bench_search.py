#!/usr/bin/env python
"""Benchmark of reid.inference.topk_search on a large synthetic gallery: time and memory.

    OMP_NUM_THREADS=1 python scripts/bench_search.py                  # 1,000,000 x 512, 10 queries
    python scripts/bench_search.py --gallery 200000 --chunks 4096 65536 --mmap

The gallery (float32, random unit vectors; seeded) is built in memory chunk by chunk (``--mmap``:
written to a temporary .npy and searched through a read-only memory map). Each chunk size is run
``--repeats`` times (best time reported); memory is the process's resident set sampled every 2 ms
during the search, minus its size before the search (the gallery itself is not counted), beside the
bound stated in ``topk_search``'s docstring. The result of every chunk size is checked equal to the
first one's. faiss is not used (optional, not installed here).
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
    """Context manager: ``.extra`` = peak resident MB while inside, minus the resident MB at entry."""

    def __enter__(self):
        self.start = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())
        self.extra = self.peak - self.start


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
    args = parser.parse_args()
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
