"""Identity sampler: batches of P identities x K images, distributed-aware, seeded per epoch.

Two definitions of an epoch (``sampler.epoch``), as the released codes of the recipes differ:

- ``images``: a pass over the training images in chunks of K per identity (BoT's
  RandomIdentitySampler): about ``images / (P K)`` batches (Market-1501, P=16 K=4: 185).
- ``identities``: every identity once, with K of its images (MGN-pytorch's RandomSampler, RGA-Net's
  and BDB's RandomIdentitySampler): ``identities / P`` batches (Market-1501, P=16: 46 or 47). The
  identities left over after the last full batch are dropped (``last_batch: drop``, a DataLoader with
  ``drop_last=True``: RGA-Net, BDB) or form one smaller last batch (``last_batch: keep``,
  ``drop_last=False``: MGN-pytorch, LAG-Net).

``images`` epoch, once fewer than P identities have chunks left (``sampler.exhausted``): ``top_up``
fills each remaining batch with other identities (a fixed number of batches, e.g. 185 on Market);
``stop`` ends the epoch there, as BoT's release (``data/samplers/triplet_sampler.py:63``,
``while len(avai_pids) >= self.num_pids_per_batch``): the number of batches then varies by epoch
(Market-1501 at 16 x 4: 182-184) and ``len()`` is that of the current epoch.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from reid.registry import suggestion

from .datasets.base import DatasetError

EPOCHS = ("images", "identities")
LAST_BATCHES = ("drop", "keep")
EXHAUSTED = ("top_up", "stop")


def batches_per_epoch(images_per_id: Sequence[int], num_ids: int, num_instances: int, epoch: str = "images",
                      last_batch: str = "drop", world_size: int = 1) -> int:
    """Batches one process draws in an epoch, from the number of images of each identity.

    ``images``: every identity gives ``max(1, n // K)`` chunks; ``floor(chunks / (P W))`` batches.
    ``identities``: ``floor(ids / (P W))`` full batches, plus with ``last_batch: keep`` one batch of
    ``(ids mod P W) // W`` identities per process when that is at least one.
    """
    p_all = int(num_ids) * int(world_size)
    if epoch == "images":
        chunks = sum(max(1, int(n) // int(num_instances)) for n in images_per_id)
        return max(1, chunks // p_all)
    if epoch != "identities":
        raise ValueError(f"unknown sampler.epoch '{epoch}'{suggestion(str(epoch), EPOCHS)}")
    ids = len(images_per_id)
    full = ids // p_all
    partial = last_batch == "keep" and (ids - full * p_all) // int(world_size) >= 1
    return full + int(partial)


class PKSampler:
    """Yields index batches of ``num_ids`` identities x ``num_instances`` images.

    ``epoch="images"``: the epoch splits each identity's images (shuffled) into chunks of K (an
    identity with fewer than K images is sampled with replacement, leftovers dropped); global batches
    of ``world_size x P`` distinct identities are drawn from the identities with chunks left (topped
    up with random identities when fewer remain).

    ``epoch="identities"``: the identities are shuffled and taken ``world_size x P`` at a time, each
    with K of its images (without replacement; with replacement when it has fewer than K). The
    remainder after the last full global batch is dropped (``last_batch="drop"``) or, with
    ``"keep"``, is one last global batch in which every rank gets ``remainder // world_size``
    identities (the ``remainder mod world_size`` left over are dropped; so ranks always hold batches
    of equal size).

    In both modes rank ``r`` gets the ``r``-th slice of P identities of each global batch; the order
    is a pure function of ``(seed, epoch)`` (:meth:`set_epoch`); ``len()`` is batches per epoch.
    """

    def __init__(self, pids: Sequence[int], num_ids: int, num_instances: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, epoch: str = "images", last_batch: str = "drop",
                 exhausted: str = "top_up"):
        pids = np.asarray(pids, dtype=np.int64)
        self.num_ids, self.num_instances = int(num_ids), int(num_instances)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        if epoch not in EPOCHS:
            raise ValueError(f"unknown sampler.epoch '{epoch}'{suggestion(str(epoch), EPOCHS)}")
        if last_batch not in LAST_BATCHES:
            raise ValueError(f"unknown sampler.last_batch '{last_batch}'{suggestion(str(last_batch), LAST_BATCHES)}")
        if exhausted not in EXHAUSTED:
            raise ValueError(f"unknown sampler.exhausted '{exhausted}'{suggestion(str(exhausted), EXHAUSTED)}")
        self.mode, self.last_batch, self.exhausted = epoch, last_batch, exhausted
        self._cached: tuple[int, list[np.ndarray]] | None = None
        self.epoch = 0
        uniq, inverse = np.unique(pids, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(uniq)))[:-1]
        self.groups = np.split(order, bounds)  # image indices per identity
        if self.num_ids < 1 or self.num_instances < 1:
            raise DatasetError("sampler: num_ids and num_instances must be >= 1")
        if self.num_ids * self.world_size > len(uniq):
            raise DatasetError(
                f"sampler: a batch needs {self.num_ids * self.world_size} identities "
                f"(sampler.num_ids x {self.world_size} processes) but the training set has {len(uniq)}"
            )
        self._len = batches_per_epoch([len(g) for g in self.groups], self.num_ids, self.num_instances,
                                      epoch, last_batch, self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.mode == "images" and self.exhausted == "stop":
            return len(self.batches())
        return self._len

    def batches(self, epoch: int | None = None) -> list[np.ndarray]:
        """This rank's batches of epoch ``epoch`` (default: the current one): [P*K] index arrays
        (smaller in a kept last batch of the ``identities`` mode)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        rng = np.random.default_rng([self.seed, epoch, 1729])
        if self.mode == "identities":
            out = self._identity_batches(rng)
        else:
            out = self._image_batches(rng)
        self._cached = (epoch, out)
        return out

    def _image_batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        """``images`` mode: chunks of K per identity, P identities with chunks left per rank and batch."""
        k, p_all = self.num_instances, self.num_ids * self.world_size
        chunks: list[list[np.ndarray]] = []
        for g in self.groups:
            idx = rng.choice(g, k, replace=True) if len(g) < k else rng.permutation(g)
            n = len(idx) // k
            chunks.append([idx[j * k:(j + 1) * k] for j in range(n)])
        remaining = np.array([len(c) for c in chunks])
        out = []
        stop = self.exhausted == "stop"
        while stop or len(out) < self._len:
            avail = np.flatnonzero(remaining > 0)
            if stop and len(avail) < p_all:
                break
            if len(avail) >= p_all:
                ids = rng.choice(avail, p_all, replace=False)
            else:  # top up with fresh chunks of other identities
                others = np.setdiff1d(np.arange(len(chunks)), avail)
                ids = np.concatenate([avail, rng.choice(others, p_all - len(avail), replace=False)])
                ids = rng.permutation(ids)
            batch = []  # every rank draws the same global batch, then keeps its slice
            for i in ids:
                if remaining[i] > 0:
                    batch.append(chunks[i][len(chunks[i]) - remaining[i]])
                else:
                    g = self.groups[i]
                    batch.append(rng.choice(g, k, replace=len(g) < k))
            remaining[ids] = np.maximum(remaining[ids] - 1, 0)
            mine = batch[self.rank * self.num_ids:(self.rank + 1) * self.num_ids]
            out.append(np.concatenate(mine))
        return out

    def _identity_batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        """``identities`` mode: every identity once (shuffled) with K images, P per rank and batch."""
        k, w = self.num_instances, self.world_size
        order = rng.permutation(len(self.groups))
        # every rank draws every identity's images (same stream), then keeps its own slices
        images = [rng.choice(self.groups[i], k, replace=len(self.groups[i]) < k) for i in order]
        p_all = self.num_ids * w
        out = []
        for b in range(self._len):
            start = b * p_all
            per_rank = min(self.num_ids, (len(order) - start) // w)  # < P only in a kept last batch
            first = start + self.rank * per_rank
            out.append(np.concatenate(images[first:first + per_rank]))
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.batches())
