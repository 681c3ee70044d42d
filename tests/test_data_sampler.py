"""P x K identity sampler: batch structure, determinism per (seed, epoch), distributed slices."""
from __future__ import annotations

import numpy as np
import pytest

from reid.data import DatasetError, PKSampler


def make_pids(seed=0, ids=30):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 12, ids)  # some identities have fewer than K images
    return np.repeat(np.arange(ids), counts)


def test_batches_are_p_ids_by_k_images():
    pids = make_pids()
    s = PKSampler(pids, num_ids=4, num_instances=4, seed=1)
    batches = list(s)
    assert len(batches) == len(s) > 5
    for b in batches:
        assert b.shape == (16,)
        ids, counts = np.unique(pids[b], return_counts=True)
        assert len(ids) == 4 and (counts == 4).all()
        # each K-chunk is one identity
        assert all(len(set(pids[b[i:i + 4]])) == 1 for i in range(0, 16, 4))
    seen = np.concatenate(batches)
    assert len(np.unique(pids[seen])) == 30  # every identity appears in an epoch


def test_epoch_order_is_a_function_of_seed_and_epoch():
    pids = make_pids()
    a, b = PKSampler(pids, 4, 4, seed=3), PKSampler(pids, 4, 4, seed=3)
    a.set_epoch(5)
    b.set_epoch(5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    b.set_epoch(6)
    assert not all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(np.array_equal(x, y) for x, y in zip(a.batches(6), b))
    c = PKSampler(pids, 4, 4, seed=4)
    c.set_epoch(5)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_ranks_get_disjoint_identities_of_each_global_batch():
    pids = make_pids(1, ids=40)
    ranks = [PKSampler(pids, 3, 2, seed=0, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    single = PKSampler(pids, 3, 2, seed=0)
    assert len(single) >= len(ranks[0])
    for e in (0, 1):
        for r in ranks:
            r.set_epoch(e)
        for b0, b1 in zip(*ranks):
            assert b0.shape == b1.shape == (6,)
            assert not set(pids[b0]) & set(pids[b1])


def test_too_few_identities_is_an_error():
    with pytest.raises(DatasetError, match="identities"):
        PKSampler([0, 0, 1, 1], num_ids=2, num_instances=2, world_size=2)
