"""Host memory for CPU training: keep freed blocks for reuse instead of returning them to the OS.

glibc serves blocks above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and gives them
back with ``munmap`` when freed, so every batch-sized tensor (a float batch of 64 x 3 x 384 x 128 is
38 MiB; activations are larger) costs a page fault per 4 KiB page on first touch, every step. With
mmap disabled and trimming off, such blocks come from the heap and are reused: the CPU training step
of BoT (ResNet-50, 64 x 256 x 128) goes from 14.5 s to 8.7 s and the batched augmentation runs 2-3x
faster on the 2-core development machines. The heap then keeps its high-water mark (what the process
needed at its peak) until exit. Set ``REID_HOST_MALLOC=default`` to leave glibc's settings alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
_applied: bool | None = None


def keep_freed_host_memory() -> bool:
    """Turn off mmap'd allocations and heap trimming in glibc's malloc (once per process).
    Returns whether the setting is in effect (False off Linux/glibc or when opted out)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("REID_HOST_MALLOC", "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
