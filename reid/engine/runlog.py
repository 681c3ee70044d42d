"""Run logging: console + plain-text log file, TensorBoard scalars; only rank 0 writes."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from reid.atomic_io import make_folder, os_errors


class HeldLog(logging.Handler):
    """Keeps the log file's records until :func:`release_log` writes them: a run refused while it
    sets up (a checkpoint that does not fit) leaves ``log.txt`` as it was."""

    def __init__(self, path: Path):
        super().__init__()
        self.path, self.records = path, []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _file_handler(path: Path, fmt: logging.Formatter) -> logging.Handler:
    make_folder(path.parent, "output_dir")
    with os_errors(path, "cannot write the log"):
        handler = logging.FileHandler(path)
    handler.setFormatter(fmt)
    return handler


def release_log(logger: logging.Logger) -> None:
    """Open the held log file (:class:`HeldLog`), write the records kept so far, log straight to it."""
    for held in [h for h in logger.handlers if isinstance(h, HeldLog)]:
        handler = _file_handler(held.path, held.formatter)
        for record in held.records:
            handler.handle(record)
        logger.removeHandler(held)
        logger.addHandler(handler)


def setup_logger(output_dir: str | Path | None, rank: int = 0, name: str = "reid", hold: bool = False
                 ) -> logging.Logger:
    """A logger printing to stdout and appending to ``output_dir/log.txt`` (rank 0 only); with
    ``hold`` the file is neither created nor written until :func:`release_log`."""
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
        path = Path(output_dir) / "log.txt"
        if hold:
            held = HeldLog(path)
            held.setFormatter(fmt)
            logger.addHandler(held)
        else:
            logger.addHandler(_file_handler(path, fmt))
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
        with os_errors(log_dir, "cannot create the TensorBoard folder"):
            self.writer = SummaryWriter(str(log_dir))

    def add(self, tag: str, value: Any, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, float(value), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
