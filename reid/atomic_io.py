"""The one place where reid touches the user's files: atomic writes and operating-system errors.

**Atomic writes**: a reader (or a crash, or a power loss) sees the old file or the new one, never a
partial one, and concurrent writers of one path never mix their bytes. The data goes to a uniquely
named temporary file next to the target (``.NAME.PID.RANDOM.tmp``), is flushed and ``fsync``-ed,
renamed over the target, and the folder is ``fsync``-ed so that the rename itself survives a power
loss. The temporary file of a writer that was killed (SIGKILL, power loss) is removed by
:func:`remove_stale_temporaries` once its process is gone; so is a :func:`temporary_folder` (a
folder filled and then renamed into place: a generated or extracted data set).

**Operating-system errors** (permission denied, read-only file system, missing, not a folder, is a
folder, no space, quota) become a :class:`PathError`: one line ``PATH: <what failed>: <cause in
words>``, which the command-line tools print as ``error: ...`` (exit 2). :func:`os_errors` does it
for a block of code; :func:`describe` words any ``OSError``.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Mapping

from reid.registry import UserError

#: errno -> the cause in words (others: the system's own text).
CAUSES = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "file name too long",
    errno.EIO: "input/output error of the device",
}
#: The name of a temporary file of :func:`atomic_file`: ``.NAME.PID.RANDOM.tmp``.
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<token>[0-9a-f]{8})\.tmp$")


class PathError(UserError, OSError):
    """A user path that cannot be created, written or read; the message is one line naming the
    path and the cause."""


def describe(exc: OSError, path: str | os.PathLike | None = None, action: str = "") -> str:
    """``PATH: ACTION: cause in words`` of ``exc`` (``path``: the user's path, else the error's)."""
    where = path if path is not None else (exc.filename if exc.filename is not None else "")
    cause = CAUSES.get(exc.errno or -1) or (exc.strerror or str(exc) or type(exc).__name__).lower()
    return (f"{where}: " if str(where) else "") + (f"{action}: " if action else "") + cause


@contextmanager
def os_errors(path: str | os.PathLike | None = None, action: str = "") -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into a :class:`PathError` worded by :func:`describe`
    (user errors pass through unchanged)."""
    try:
        yield
    except UserError:
        raise
    except OSError as exc:
        raise PathError(describe(exc, path, action)) from None


def make_folder(path: str | os.PathLike, what: str = "") -> Path:
    """``mkdir -p path``; an OS error is a :class:`PathError` (``what``: e.g. ``output_dir``)."""
    path = Path(path)
    action = f"cannot create {what or 'the folder'}"
    try:
        with os_errors(path, action):
            path.mkdir(parents=True, exist_ok=True)
    except PathError:
        blocker = _file_in(path)
        if blocker is None:
            raise
        where = "is a file" if blocker == path else f"is under the file {blocker}"
        raise PathError(f"{path}: {action}: it {where}, not a folder") from None
    return path


def _file_in(path: Path) -> Path | None:
    """The first of ``path`` and its parents that exists as a non-folder (None if none does)."""
    for p in [path, *path.parents]:
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


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


def temporary_path(path: str | os.PathLike) -> Path:
    """A unique temporary name next to ``path`` (``.NAME.PID.RANDOM.tmp``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return True


def temporary_folder(path: str | os.PathLike, what: str = "a temporary folder") -> Path:
    """A new empty folder next to ``path``, named like the temporary files (:func:`temporary_path`),
    to fill and then rename onto ``path``. The temporaries of killed processes in that folder are
    removed first (:func:`remove_stale_temporaries`); an OS error is a :class:`PathError`."""
    path = Path(path)
    remove_stale_temporaries(path.parent)
    tmp = temporary_path(path)
    with os_errors(path.parent, f"cannot create {what}"):
        tmp.mkdir()
    return tmp


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of :func:`atomic_file` and the folders of :func:`temporary_folder`
    in ``folder`` whose writing process is no longer running (killed mid-write); returns those
    removed. Live writers' temporaries are kept."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        found = TEMPORARY.match(entry.name)
        if not found or _alive(int(found.group("pid"))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            elif entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
            else:
                continue
            removed.append(folder / entry.name)
        except OSError:
            pass
    return removed


class _Recorded:
    """A file whose ``write`` remembers the first OSError it raised: writers that wrap it in their
    own error (torch.save: ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``)
    still report the disk's cause."""

    def __init__(self, f: IO[bytes]):
        self._f, self.error = f, None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


@contextmanager
def atomic_file(path: str | os.PathLike, action: str = "cannot write") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block completes, the file written there is
    ``fsync``-ed and renamed to ``path``; on any exception (Ctrl-C included) it is removed and
    ``path`` keeps its previous content. OS errors are :class:`PathError` naming ``path``."""
    path = Path(path)
    kept = " (the previous file is unchanged)" if path.is_file() else ""
    make_folder(path.parent)
    tmp = temporary_path(path)
    try:
        with os_errors(path, action):
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except PathError as exc:
        _unlink(tmp)
        raise PathError(f"{exc}{kept}") from None
    except BaseException:
        _unlink(tmp)
        raise
    _fsync_folder(path.parent)


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(f)`` on a binary file that becomes ``path`` only once it is complete; returns
    ``path``. On any exception the temporary file is removed and ``path`` keeps its previous
    content; an OS error (a full disk included, also when ``write`` wraps it in an error of its
    own) is a :class:`PathError` naming ``path`` and the cause."""
    path = Path(path)
    with atomic_file(path) as tmp:
        with os_errors(path, "cannot write"), open(tmp, "xb") as raw:
            f = _Recorded(raw)
            try:
                write(f)  # type: ignore[arg-type]
                raw.flush()
            except Exception as exc:
                if f.error is not None and not isinstance(exc, OSError):
                    raise f.error from None
                raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.expanduser().resolve() == b.expanduser().resolve()


def check_apart(outputs: Mapping[str, str | os.PathLike | None] | Iterable[tuple[str, str | os.PathLike | None]],
                inputs: Mapping[str, str | os.PathLike | Iterable[str | os.PathLike] | None]) -> None:
    """Raise :class:`PathError` when an output file (``{option: path}`` or ``(option, path)``
    pairs) is one of the input files (``{option: path or paths}``) of the same command (the same
    path, a link or a hard link): writing it would destroy what the command reads."""
    for out_key, out in outputs.items() if isinstance(outputs, Mapping) else outputs:
        if out is None:
            continue
        for in_key, given in inputs.items():
            items = [given] if isinstance(given, (str, os.PathLike)) else list(given or [])
            for item in items:
                if _same_file(Path(out), Path(item)):
                    raise PathError(f"{out_key} {out} is the file {in_key} {item} that this command reads; writing "
                                    f"it would destroy it; choose another {out_key}")
