"""The cost of a training step: FLOPs, the machine's measured peak, and peak memory.

* FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` (matrix products and
  convolutions, forward and backward; element-wise work is not counted, as is usual).
* The machine's peak is measured, not looked up: the best rate of one large fp32 matrix product on
  the same device, in the same process.
* Peak memory of a step is what it adds on top of what was resident before it: on CUDA
  ``max_memory_allocated`` minus ``memory_allocated`` before the step; on CPU the peak resident set
  (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the resident set before the step.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


class FlopCount(FlopCounterMode):
    """``with FlopCount() as count: work()`` then ``count.total``: the FLOPs of the matrix products
    and convolutions the work ran (forward and backward)."""

    def __init__(self) -> None:
        super().__init__(display=False)

    @property
    def total(self) -> int:
        return int(self.get_total_flops())


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matrix products and convolutions that ``fn()`` runs (forward and backward)."""
    with FlopCount() as count:
        fn()
    return count.total


def matmul_peak_gflops(device: torch.device | str = "cpu", n: int | None = None, repeats: int = 3) -> float:
    """The best GFLOP/s of an ``n x n`` fp32 matrix product on ``device`` (``2 n^3`` FLOPs each);
    ``n`` defaults to 2048 on CPU and 8192 on CUDA."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for i in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        if i:  # the first product warms up the library
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


class PeakMemory:
    """Bytes a block of work adds at its peak over what was resident when the block began.

    ``with PeakMemory(device) as peak: work()`` then ``peak.bytes`` (None where the platform cannot
    tell: CPU without Linux's ``/proc``)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.bytes: int | None = None
        self._start = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
                self._start = _status_kib("VmRSS") * 1024
            except OSError:
                self._start = -1
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._start
        elif self._start >= 0:
            self.bytes = _status_kib("VmHWM") * 1024 - self._start


def _start_ns(event: Any) -> int:
    """An allocation record's start time in ns (torch < 2.2 gives microseconds only: ``start_us``)."""
    return event.start_ns() if hasattr(event, "start_ns") else int(event.start_us()) * 1000


class AllocationPeak:
    """The peak of tensor memory allocated inside a block, above what was allocated at its start,
    counted exactly from the allocator's records (``torch.profiler`` with ``profile_memory``): the
    quantity ``torch.cuda.max_memory_allocated`` reports on a GPU, on any device, independent of
    other load and of how the host's allocator keeps freed memory.

    ``with AllocationPeak() as peak: work()`` then ``peak.bytes`` (peak) and ``peak.end_bytes``
    (still allocated at the end). The profiler slows the work (a few per cent for large ops); blocks do not nest."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.bytes = 0
        self.end_bytes = 0

    def __enter__(self) -> AllocationPeak:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        self._prof = profile(activities=activities, profile_memory=True)
        self._prof.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._prof.__exit__(*exc)
        if exc[0] is not None:
            return
        want = "CUDA" if self.device.type == "cuda" else "CPU"
        records = sorted((_start_ns(e), e.nbytes()) for e in self._prof.profiler.kineto_results.events()
                         if e.name() == "[memory]" and want in str(e.device_type()))
        current = peak = 0
        for _, nbytes in records:
            current += nbytes
            peak = max(peak, current)
        self.bytes, self.end_bytes = peak, current


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (an iterable of tensors)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of an optimiser's state tensors (momentum, Adam moments; empty before the first step)."""
    return tensor_bytes(v for state in optimizer.state.values() for v in state.values())
