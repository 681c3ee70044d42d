"""topk_search equals ranking the full distance matrix, for any chunking."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reid.evaluation import compute_distance
from reid.inference.search import topk_search


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_chunked_topk_equals_the_full_ranking(metric, tmp_path):
    g = torch.Generator().manual_seed(0)
    query, gallery = torch.randn(4, 16, generator=g), torch.randn(103, 16, generator=g)
    full = compute_distance(query, gallery, metric=metric)
    want_d, want_i = torch.sort(full, dim=1)
    np.save(tmp_path / "g.npy", gallery.numpy())
    mapped = np.load(tmp_path / "g.npy", mmap_mode="r")
    for chunk, k in [(1, 5), (7, 10), (10, 7), (50, 103), (1000, 3)]:
        for source in (gallery, mapped):
            d, i = topk_search(query, source, k, chunk_size=chunk, metric=metric)
            assert torch.equal(i, want_i[:, :k]), (chunk, k)
            assert torch.allclose(d, want_d[:, :k], atol=1e-6)
    d, i = topk_search(query.numpy(), gallery, 500, chunk_size=9, metric=metric)  # k > G: every row, ranked
    assert i.shape == (4, 103) and torch.equal(i, want_i)


def test_search_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"expected query \[Q, D\] and gallery \[G, D\]"):
        topk_search(torch.zeros(2, 8), torch.zeros(5, 9), 3)
    with pytest.raises(ValueError, match="unknown metric"):
        topk_search(torch.zeros(2, 8), torch.zeros(5, 8), 3, metric="l1")
