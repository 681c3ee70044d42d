"""Identity sampler: batches of P identities x K images, distributed-aware, seeded per epoch."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from .datasets.base import DatasetError


class PKSampler:
    """Yields index batches of ``num_ids`` identities x ``num_instances`` images.

    An epoch splits each identity's images (shuffled) into chunks of K (an identity with fewer than
    K images is sampled with replacement, leftovers dropped); global batches of ``world_size x P``
    distinct identities are drawn from the identities with chunks left (topped up with random
    identities when fewer remain), and rank ``r`` gets the ``r``-th slice of P identities. The order
    is a pure function of ``(seed, epoch)`` (:meth:`set_epoch`); ``len()`` is batches per epoch.
    """

    def __init__(self, pids: Sequence[int], num_ids: int, num_instances: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        pids = np.asarray(pids, dtype=np.int64)
        self.num_ids, self.num_instances = int(num_ids), int(num_instances)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
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
        chunks = sum(max(1, len(g) // self.num_instances) for g in self.groups)
        self._len = max(1, chunks // (self.num_ids * self.world_size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._len

    def batches(self, epoch: int | None = None) -> list[np.ndarray]:
        """This rank's batches of epoch ``epoch`` (default: the current one): [P*K] index arrays."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, epoch, 1729])
        k, p_all = self.num_instances, self.num_ids * self.world_size
        chunks: list[list[np.ndarray]] = []
        for g in self.groups:
            idx = rng.choice(g, k, replace=True) if len(g) < k else rng.permutation(g)
            n = len(idx) // k
            chunks.append([idx[j * k:(j + 1) * k] for j in range(n)])
        remaining = np.array([len(c) for c in chunks])
        out = []
        for _ in range(self._len):
            avail = np.flatnonzero(remaining > 0)
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

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.batches())
