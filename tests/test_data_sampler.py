"""P x K identity sampler: batch structure, epoch length in both modes, determinism per (seed, epoch),
distributed slices, the config's choice check."""
from __future__ import annotations

import numpy as np
import pytest

from reid.config import ConfigError, load_config
from reid.data import DatasetError, PKSampler

# 10 identities with 1..9 and 13 images: with K=4 they give 1,1,1,1,1,1,1,2,2,3 = 14 chunks.
KNOWN = np.repeat(np.arange(10), [1, 2, 3, 4, 5, 6, 7, 8, 9, 13])


def make_pids(seed=0, ids=30):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 12, ids)  # some identities have fewer than K images
    return np.repeat(np.arange(ids), counts)


@pytest.mark.parametrize("epoch, last_batch, p, world, sizes", [
    ("images", "drop", 3, 1, [12] * 4),           # 14 chunks // 3
    ("images", "keep", 3, 1, [12] * 4),           # last_batch applies to the identities mode only
    ("images", "drop", 2, 2, [8] * 3),            # 14 // (2 x 2)
    ("identities", "drop", 3, 1, [12] * 3),       # 10 ids // 3
    ("identities", "keep", 3, 1, [12] * 3 + [4]),  # + one batch of the 1 identity left
    ("identities", "drop", 2, 2, [8] * 2),        # 10 // (2 x 2)
    ("identities", "keep", 2, 2, [8] * 2 + [4]),  # 2 left: 1 per rank
    ("identities", "keep", 3, 2, [12, 8]),        # 4 left: 2 per rank
    ("identities", "keep", 3, 3, [12]),           # 1 left: fewer than one per rank, dropped
])
def test_batches_per_epoch_hand_computed(epoch, last_batch, p, world, sizes):
    for rank in range(world):
        s = PKSampler(KNOWN, p, 4, seed=2, rank=rank, world_size=world, epoch=epoch, last_batch=last_batch)
        assert len(s) == len(sizes)
        assert [len(b) for b in s] == sizes


@pytest.mark.parametrize("epoch", ["images", "identities"])
def test_batches_are_p_ids_by_k_images(epoch):
    pids = make_pids()
    s = PKSampler(pids, num_ids=4, num_instances=4, seed=1, epoch=epoch)
    batches = list(s)
    assert len(batches) == len(s) >= 7
    for b in batches:
        assert b.shape == (16,)
        ids, counts = np.unique(pids[b], return_counts=True)
        assert len(ids) == 4 and (counts == 4).all()
        # each K-chunk is one identity
        assert all(len(set(pids[b[i:i + 4]])) == 1 for i in range(0, 16, 4))
    seen = np.concatenate(batches)
    assert len(np.unique(pids[seen])) == (30 if epoch == "images" else 28)  # identities: 7 x 4 of 30


@pytest.mark.parametrize("p, world, last_batch, covered", [
    (4, 1, "keep", 30),  # 7 x 4 + 2
    (4, 1, "drop", 28),
    (3, 2, "keep", 30),  # 5 x 6
    (2, 4, "keep", 28),  # 3 x 8, then 6 left: 1 per rank, 2 left out
    (2, 4, "drop", 24),
])
def test_identities_epoch_takes_each_identity_once(p, world, last_batch, covered):
    pids = make_pids(3, ids=30)
    ranks = [PKSampler(pids, p, 4, seed=5, rank=r, world_size=world, epoch="identities", last_batch=last_batch)
             for r in range(world)]
    for e in (0, 1):
        for s in ranks:
            s.set_epoch(e)
        taken = np.concatenate([np.concatenate(s.batches()) for s in ranks])
        ids, counts = np.unique(pids[taken], return_counts=True)
        assert len(ids) == covered and (counts == 4).all()  # once, with K images
        for g in np.unique(pids):  # K distinct images whenever the identity has K
            mine = taken[pids[taken] == g]
            if len(mine) and (pids == g).sum() >= 4:
                assert len(set(mine)) == 4


@pytest.mark.parametrize("epoch", ["images", "identities"])
def test_epoch_order_is_a_function_of_seed_and_epoch(epoch):
    pids = make_pids()
    a, b = PKSampler(pids, 4, 4, seed=3, epoch=epoch), PKSampler(pids, 4, 4, seed=3, epoch=epoch)
    a.set_epoch(5)
    b.set_epoch(5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    b.set_epoch(6)
    assert not all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(np.array_equal(x, y) for x, y in zip(a.batches(6), b))
    c = PKSampler(pids, 4, 4, seed=4, epoch=epoch)
    c.set_epoch(5)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("epoch", ["images", "identities"])
def test_ranks_get_disjoint_identities_of_each_global_batch(epoch):
    pids = make_pids(1, ids=40)
    ranks = [PKSampler(pids, 3, 2, seed=0, rank=r, world_size=2, epoch=epoch, last_batch="keep")
             for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    single = PKSampler(pids, 3, 2, seed=0, epoch=epoch)
    assert len(single) >= len(ranks[0])
    for e in (0, 1):
        for r in ranks:
            r.set_epoch(e)
        for i, (b0, b1) in enumerate(zip(*ranks)):  # identities: 40 = 6 x 6 + a last batch of 2 x 2
            assert b0.shape == b1.shape == ((4,) if epoch == "identities" and i == 6 else (6,))
            assert not set(pids[b0]) & set(pids[b1])


def test_too_few_identities_is_an_error():
    with pytest.raises(DatasetError, match="identities"):
        PKSampler([0, 0, 1, 1], num_ids=2, num_instances=2, world_size=2)


@pytest.mark.parametrize("key, value, hint", [("epoch", "identity", "identities"), ("last_batch", "kept", "keep")])
def test_sampler_choices_are_checked_at_load(key, value, hint):
    with pytest.raises(ConfigError, match=f"sampler.{key}.*did you mean '{hint}'"):
        load_config(None, [f"sampler.{key}={value}"])
