"""Top-k search of query features in a gallery of any size, chunk by chunk in bounded memory."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reid.evaluation.distance import METRICS

#: Gallery rows per chunk by default: with D = 512 and 10 queries a chunk needs about 70 MB.
CHUNK_SIZE = 16384


def topk_search(query: Any, gallery: Any, k: int, chunk_size: int = CHUNK_SIZE, metric: str = "cosine",
                device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(distances [Q, k'], gallery indices [Q, k'] int64), each query's ``k' = min(k, G)`` nearest
    gallery rows in increasing distance, for ``query`` [Q, D] and ``gallery`` [G, D] (tensor, numpy
    array or ``np.load(..., mmap_mode="r")`` memory map; any float dtype).

    The gallery is read ``chunk_size`` rows at a time and a running top-k is merged with each
    chunk's, so no [Q, G] matrix is ever formed. Memory besides the inputs is bounded by about
    ``4 * chunk_size * (D + 2 * Q + 1) + 48 * Q * k`` bytes: the chunk as float32 (a copy only when
    the gallery is not writable float32, e.g. a memory map), its row norms, its [Q, chunk_size]
    products and distances, and the running and merged top-k (float32 distances, int64 indices).
    ``metric``: ``cosine`` (1 - cos) or ``euclidean``, the distances of
    :func:`reid.evaluation.compute_distance` (same ranking; values equal to rounding), computed
    without a normalised copy of the chunk.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if int(k) < 1 or int(chunk_size) < 1:
        raise ValueError(f"k and chunk_size must be >= 1, got {k} and {chunk_size}")
    device = torch.device(device)
    q = torch.as_tensor(np.asarray(query) if not isinstance(query, torch.Tensor) else query)
    q = q.to(device, torch.float32)
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
    q2 = (q * q).sum(1, keepdim=True)
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
        dist = _chunk_distance(q, q2, part.to(device, torch.float32), metric)  # [Q, chunk]
        d, i = torch.topk(dist, min(k, dist.shape[1]), dim=1, largest=False, sorted=False)
        del dist
        best_d = torch.cat([best_d, d], dim=1)
        best_i = torch.cat([best_i, i + start], dim=1)
        if best_d.shape[1] > k:
            best_d, pick = torch.topk(best_d, k, dim=1, largest=False, sorted=False)
            best_i = best_i.gather(1, pick)
    order = torch.argsort(best_d, dim=1, stable=True)
    return best_d.gather(1, order), best_i.gather(1, order)


def _chunk_distance(q: torch.Tensor, q2: torch.Tensor, g: torch.Tensor, metric: str) -> torch.Tensor:
    """[Q, C] distances of (cosine: normalised) queries ``q`` [Q, D] (squared norms ``q2`` [Q, 1])
    to gallery rows ``g`` [C, D]; reads ``g`` twice, writes nothing of its size."""
    norms = torch.linalg.vector_norm(g, dim=1)  # [C]
    prod = q @ g.T
    if metric == "cosine":
        return prod.div_(norms.clamp_min_(1e-12)).neg_().add_(1.0)
    return prod.mul_(-2.0).add_(q2).add_(norms.square_()).clamp_(min=0).sqrt_()
