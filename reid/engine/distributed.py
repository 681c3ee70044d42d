"""Process-group set-up for ``torchrun`` (NCCL on GPUs, gloo on CPU) and the training launcher."""
from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist


def world_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment (single process: 0, 1, 0)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def launched_by_torchrun() -> bool:
    """Whether torchrun started this process (it sets ``TORCHELASTIC_RUN_ID``), at any world size."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def init_distributed(device_spec: str) -> tuple[int, int]:
    """Initialise the default process group when launched by torchrun (also with one process, so
    ``--nproc_per_node=1`` runs the distributed path: DDP, SyncBN, gathered losses); returns (rank, world)."""
    rank, world, local = world_info()
    if (world > 1 or launched_by_torchrun()) and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_spec != "cpu"
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world


def launch(cfg: Any, resume: str | None = None, force: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train ``cfg`` in this process (one rank of a torchrun job, or alone) and return metrics.

    The folders are checked first (:func:`.guards.check_run_folders`: nothing is created when they
    are unusable); the global rank 0 then holds ``output_dir``'s run lock throughout
    (:mod:`.run_lock`; with ``force`` it trains even when another run holds it), and the trainer
    checks, under the lock, that a previous run in the folder is resumed or moved aside.
    """
    from .guards import check_run_folders
    from .run_lock import run_lock
    from .trainer import Trainer

    check_run_folders(cfg)
    rank, world = init_distributed(cfg.device)
    if dist.is_initialized() and torch.cuda.is_available() and cfg.device in ("auto", "cuda"):
        cfg.device = f"cuda:{world_info()[2]}"
    try:
        with run_lock(cfg.output_dir, force=force) if rank == 0 else nullcontext():
            return Trainer(cfg, resume=resume, rank=rank, world_size=world, overwrite=overwrite).fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
