"""One training run per output folder: an exclusive ``flock`` on ``OUTPUT_DIR/run.lock``.

The operating system releases a ``flock`` when its process ends, however it ends (exit, crash,
SIGKILL), so a lock file left behind by a dead run never blocks a new one; only a live holder
does. The file records the holder (pid, host, start time, command) for the error message. A clean
exit removes the file (while still holding the lock; a waiter that opened the old file sees it
replaced and retries on the new one).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from reid.atomic_io import make_folder, os_errors
from reid.registry import UserError

LOCK_NAME = "run.lock"


class RunLockedError(UserError, RuntimeError):
    """Another live process trains into the same output folder."""


def _try_lock(path: Path) -> int | None:
    """A descriptor of ``path`` holding its exclusive flock, or None when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:  # the previous holder may have removed the file between our open and our flock
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def holder(path: Path) -> str:
    """'pid P on host H, started T' from the lock file (what is known of it)."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        info = {}
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, "
            f"started {info.get('started', '?')}")


@contextmanager
def run_lock(output_dir: str | os.PathLike, force: bool = False,
             warn: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the lock of ``output_dir`` for the ``with`` block (yields the lock file's path).

    Raises :class:`RunLockedError` when another live process holds it; with ``force`` the block
    runs anyway, unlocked, after ``warn`` (default: stderr) names the other process.
    """
    folder = make_folder(output_dir, "output_dir")
    path = folder / LOCK_NAME
    with os_errors(path, "cannot create the run lock"):
        fd = _try_lock(path)
    if fd is None:
        other = holder(path)
        if not force:
            raise RunLockedError(
                f"output_dir {folder} is in use by another run ({other}; lock {path}); wait for it to "
                "finish, choose another output_dir, or pass --force to write into it anyway")
        (warn or (lambda m: print(m, file=sys.stderr, flush=True)))(
            f"warning: --force: writing into {folder} although another run uses it ({other})")
        yield path
        return
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)
