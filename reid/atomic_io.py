"""Atomic file writes: a reader (or a crash, or a power loss) sees the old file or the new one,
never a partial one, and concurrent writers of one path never mix their bytes.

The data goes to a uniquely named temporary file next to the target (``.NAME.PID.RANDOM.tmp``),
is flushed and ``fsync``-ed, renamed over the target, and the folder is ``fsync``-ed so that the
rename itself survives a power loss.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import IO, Callable


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some file systems refuse a folder fsync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(f)`` on a binary file that becomes ``path`` only once it is complete; returns
    ``path``. On any exception (Ctrl-C included) the temporary file is removed and ``path`` keeps
    its previous content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))
