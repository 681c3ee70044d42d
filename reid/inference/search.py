"""Top-k search of query features in a gallery of any size, chunk by chunk in bounded memory."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reid.evaluation.distance import METRICS, compute_distance

#: Gallery rows per chunk by default: with D = 512 and 10 queries a chunk needs about 70 MB.
CHUNK_SIZE = 16384


def topk_search(query: Any, gallery: Any, k: int, chunk_size: int = CHUNK_SIZE, metric: str = "cosine",
                device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(distances [Q, k'], gallery indices [Q, k'] int64), each query's ``k' = min(k, G)`` nearest
    gallery rows in increasing distance, for ``query`` [Q, D] and ``gallery`` [G, D] (tensor, numpy
    array or ``np.load(..., mmap_mode="r")`` memory map; any float dtype).

    The gallery is read ``chunk_size`` rows at a time and a running top-k is merged with each
    chunk's, so no [Q, G] matrix is ever formed. Memory besides the inputs is bounded by about
    ``4 * chunk_size * (2 * D + Q) + 24 * Q * k`` bytes: the chunk as float32 and its normalised
    copy (cosine), its [Q, chunk_size] distances, and the running and merged top-k (float32
    distances, int64 indices). ``metric``: ``cosine`` (1 - cos) or ``euclidean``, as
    :func:`reid.evaluation.compute_distance` computes them; the results equal ranking the full
    distance matrix (up to the order of exactly tied distances).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if int(k) < 1 or int(chunk_size) < 1:
        raise ValueError(f"k and chunk_size must be >= 1, got {k} and {chunk_size}")
    device = torch.device(device)
    q = torch.as_tensor(np.asarray(query) if not isinstance(query, torch.Tensor) else query)
    q = q.to(device, torch.float32)
    n = len(gallery)
    if q.ndim != 2 or getattr(gallery, "ndim", 2) != 2 or (n and gallery.shape[1] != q.shape[1]):
        raise ValueError(f"expected query [Q, D] and gallery [G, D], got {tuple(q.shape)} and "
                         f"{tuple(getattr(gallery, 'shape', ()))}")
    k = min(int(k), n)
    best_d = torch.empty(len(q), 0, device=device)
    best_i = torch.empty(len(q), 0, dtype=torch.int64, device=device)
    for start in range(0, n, int(chunk_size)):
        part = gallery[start:start + int(chunk_size)]
        if not isinstance(part, torch.Tensor):
            part = np.ascontiguousarray(part, dtype=np.float32)
            part = torch.from_numpy(part if part.flags.writeable else part.copy())  # a read-only memory map
        dist = compute_distance(q, part.to(device, torch.float32), metric=metric)  # [Q, chunk]
        d, i = torch.topk(dist, min(k, dist.shape[1]), dim=1, largest=False, sorted=False)
        del dist
        best_d = torch.cat([best_d, d], dim=1)
        best_i = torch.cat([best_i, i + start], dim=1)
        if best_d.shape[1] > k:
            best_d, pick = torch.topk(best_d, k, dim=1, largest=False, sorted=False)
            best_i = best_i.gather(1, pick)
    order = torch.argsort(best_d, dim=1, stable=True)
    return best_d.gather(1, order), best_i.gather(1, order)
