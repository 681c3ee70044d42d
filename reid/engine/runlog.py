"""Run logging: console + plain-text log file, TensorBoard scalars; only rank 0 writes."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any


def setup_logger(output_dir: str | Path | None, rank: int = 0, name: str = "reid") -> logging.Logger:
    """A logger printing to stdout and appending to ``output_dir/log.txt`` (rank 0 only)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if output_dir is not None and rank == 0:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(Path(output_dir) / "log.txt")
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger


class Scalars:
    """TensorBoard scalar writer (no-op off rank 0 or when tensorboard is unavailable)."""

    def __init__(self, log_dir: str | Path | None, rank: int = 0):
        self.writer = None
        if log_dir is None or rank != 0:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # noqa: BLE001 - tensorboard is a core dependency, but never fatal
            return
        self.writer = SummaryWriter(str(log_dir))

    def add(self, tag: str, value: Any, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, float(value), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
