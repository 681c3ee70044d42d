"""Under DDP, a block that each node's local rank 0 runs before the other ranks (below the trainer)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch.distributed as dist


@contextmanager
def local_rank_zero_first(distributed: bool, rank: int) -> Iterator[None]:
    """Under DDP, each node's local rank 0 runs the block first (it builds the data set and the
    image store, cached on disk) while the other ranks wait; they then run it (reading the cache)."""
    first = int(os.environ.get("LOCAL_RANK", rank)) == 0
    if distributed and not first:
        dist.barrier()
    yield
    if distributed and first:
        dist.barrier()
