"""Time one training step of a config's network on random data, and count a run's iterations
(``tools/train.py --summary``).

The step is the trainer's: forward under the configured autocast, the configured losses, backward,
optimiser step; the batch is P x K random images at ``input.size`` (with random part masks, so
mask-guided losses run), on ``cfg.device``. No data set is read for the step; the iteration count
reads the training identities when the data set is on disk, else uses its published counts.
Besides the time, the step's cost (:mod:`reid.engine.cost`): forward and forward + backward FLOPs,
the achieved GFLOP/s beside the device's measured fp32 matrix-product peak, and the memory a step
adds at its peak.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from reid.data import DatasetError, build_dataset
from reid.data.datasets import PUBLISHED
from reid.data.sampler import batches_per_epoch
from reid.engine.amp import amp_dtype, autocast, backward, backward_and_step, optimizer_update
from reid.engine.cost import (
    AllocationPeak,
    FlopCount,
    PeakMemory,
    matmul_peak_gflops,
    optimizer_state_bytes,
    tensor_bytes,
)
from reid.engine.device import resolve_device
from reid.engine.host_memory import keep_freed_host_memory
from reid.engine.optim import build_optimizer
from reid.losses import build_losses
from reid.models.checkpointing import checkpoint_modules


def random_batch(cfg: Any, device: torch.device, seed: int = 0, num_ids: int | None = None) -> dict[str, torch.Tensor]:
    """images [P*K, 3, H, W] (normalised-looking), pids in P x K order, binary masks [P*K, 3, H, W]
    with every ``mask_valid`` [P*K] flag true (the training batch's keys); P from the config
    unless ``num_ids`` is given."""
    p, k = int(num_ids or cfg.sampler.num_ids), int(cfg.sampler.num_instances)
    h, w = int(cfg.input.size[0]), int(cfg.input.size[1])
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randn(p * k, 3, h, w, generator=g).to(device),
            "pids": torch.arange(p).repeat_interleave(k).to(device),
            "masks": (torch.rand(p * k, 3, h, w, generator=g) > 0.5).to(device),
            "mask_valid": torch.ones(p * k, dtype=torch.bool, device=device)}


class TrainStep:
    """The trainer's step for ``model`` under ``cfg``: forward under the configured autocast, the
    configured losses, backward, gradient clipping, optimiser step (``step(batch)``)."""

    def __init__(self, cfg: Any, model: nn.Module):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu":
            keep_freed_host_memory()
        self.model = model.to(self.device).train()
        checkpoint_modules(self.model, cfg.train.checkpoint_modules)
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.losses = build_losses(cfg.losses).to(self.device)
        self.optimizer = build_optimizer(cfg.optimizer, self.model)
        self.dtype = amp_dtype(cfg.train.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with autocast(self.device, self.dtype):
            total, _ = self.losses(self.model(batch["images"]), batch)
        return total

    def forward_backward(self, batch: dict[str, torch.Tensor]) -> None:
        """The step's first phase: forward, losses, backward (gradients accumulate)."""
        backward(self.forward(batch), self.scaler)

    def update(self) -> None:
        """The step's second phase: gradient clipping and the optimiser step."""
        optimizer_update(self.optimizer, self.scaler, self.model.parameters(), float(self.cfg.train.grad_clip or 0))

    def step(self, batch: dict[str, torch.Tensor], total: torch.Tensor | None = None) -> None:
        total = self.forward(batch) if total is None else total
        backward_and_step(total, self.optimizer, self.scaler, self.model.parameters(),
                          float(self.cfg.train.grad_clip or 0))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def time_train_step(cfg: Any, model: nn.Module, steps: int = 2, warmup: int = 1,
                    cost: bool = True) -> dict[str, Any]:
    """Seconds per training step of ``model`` (built from ``cfg.model``), the mean over ``steps``
    timed steps after ``warmup`` untimed ones. Returns {seconds, images_per_s, batch, size, device}
    and, with ``cost``: forward_flops and train_flops (forward + backward, counted once, on the
    first warm-up step), gflops_per_s (train FLOPs / seconds), peak_gflops (the device's measured
    fp32 matrix-product rate), peak_bytes (memory the steps add at their peak over the model's own,
    None where unknown). The model's weights are changed by the optimiser steps."""
    train = TrainStep(cfg, model)
    device = train.device
    batch = random_batch(cfg, device)
    out: dict[str, Any] = {}
    peak = PeakMemory(device)
    with peak:
        for i in range(max(warmup, 1 if cost else 0)):
            if cost and i == 0:
                with FlopCount() as fwd:
                    total = train.forward(batch)
                with FlopCount() as rest:
                    train.step(batch, total)
                out["forward_flops"], out["train_flops"] = fwd.total, fwd.total + rest.total
            else:
                train.step(batch)
        start = time.perf_counter()
        for _ in range(steps):
            train.step(batch)
        seconds = (time.perf_counter() - start) / max(steps, 1)
    n = int(batch["images"].shape[0])
    out.update({"seconds": seconds, "images_per_s": n / seconds, "batch": n,
                "size": tuple(int(v) for v in cfg.input.size), "device": str(device)})
    if cost:
        out["gflops_per_s"] = out["train_flops"] / seconds / 1e9 if steps else None
        out["peak_gflops"] = matmul_peak_gflops(device)
        out["peak_bytes"] = peak.bytes
    return out


def counted_step(train: TrainStep, batch: dict[str, torch.Tensor]) -> tuple[int, int, int]:
    """One training step from no gradients, its two phases counted apart (they peak on different
    things): (forward + backward peak, gradients and what else stays after backward, optimiser-step
    peak above that). The step's peak is ``max(first, kept + update)``."""
    train.optimizer.zero_grad(set_to_none=True)  # gradients are counted from nothing, as part of the step
    with AllocationPeak(train.device) as backward:
        train.forward_backward(batch)
    with AllocationPeak(train.device) as update:
        train.update()
    return backward.bytes, backward.end_bytes, update.bytes


def step_memory(cfg: Any, model: nn.Module, probe_ids: tuple[int, int] = (2, 4)) -> dict[str, Any]:
    """The memory a training step of ``cfg``'s P x K batch needs: the tensors it allocates, what
    ``torch.cuda.max_memory_allocated`` reports on a GPU (the CUDA context, cuDNN workspaces and the
    caching allocator's rounding come on top there; the host's allocator on CPU).

    resident: weights, buffers and optimiser state (measured after one step). The step is counted
    exactly (:class:`~reid.engine.cost.AllocationPeak`) at P = ``probe_ids`` (K as configured) in two
    phases: forward + backward, whose peak (activations kept for backward, gradients, temporaries)
    grows linearly in the batch and is extended to the config's P (``per_image`` bytes per image);
    and the optimiser step, whose peak (gradients plus the update's temporaries) does not depend on
    the batch. step = the larger of the two.
    Returns {weights, optimizer, resident, backward_fixed, per_image, update, batch, step, total,
    probes: [(B, step peak)], device, amp}. The model's weights are changed by the optimiser steps."""
    train = TrainStep(cfg, model)
    k = int(cfg.sampler.num_instances)
    train.step(random_batch(cfg, train.device, num_ids=probe_ids[0]))  # optimiser state exists now
    probes, backward, update = [], [], 0
    for p in probe_ids:
        batch = random_batch(cfg, train.device, num_ids=p)
        first, kept, upd = counted_step(train, batch)
        backward.append(first)
        update = max(update, kept + upd)
        probes.append((p * k, max(first, kept + upd)))
        del batch
    (b1, _), (b2, _) = probes
    per_image = (backward[1] - backward[0]) / (b2 - b1)
    weights = tensor_bytes(list(train.model.parameters()) + list(train.model.buffers()))
    optimizer = optimizer_state_bytes(train.optimizer)
    batch_size = int(cfg.sampler.num_ids) * k
    step = max(backward[0] + per_image * (batch_size - b1), update)
    return {"weights": weights, "optimizer": optimizer, "resident": weights + optimizer,
            "backward_fixed": backward[0] - per_image * b1, "per_image": per_image, "update": update,
            "batch": batch_size, "step": step, "total": weights + optimizer + step, "probes": probes,
            "device": str(train.device), "amp": str(train.dtype).replace("torch.", "") if train.dtype else "off"}


def format_step_memory(m: dict[str, Any]) -> str:
    """Two lines: the memory a step of the config's batch needs and what it is made of."""
    gib = 2**30
    probes = ", ".join(f"{b}" for b, _ in m["probes"])
    return (f"memory a training step needs: {m['total'] / gib:.2f} GiB at batch {m['batch']} (amp {m['amp']}) = "
            f"{m['weights'] / gib:.2f} weights + {m['optimizer'] / gib:.2f} optimiser state + "
            f"{m['step'] / gib:.2f} step peak (activations, gradients, temporaries)\n"
            f"  the step peak grows {m['per_image'] / 2**20:,.1f} MiB per image (tensor allocations counted at "
            f"batches {probes}, extended linearly); a GPU adds its context and allocator rounding")


def format_step_time(t: dict[str, Any]) -> str:
    h, w = t["size"]
    name = torch.cuda.get_device_name(t["device"]) if t["device"].startswith("cuda") else \
        f"cpu, {torch.get_num_threads()} threads"
    lines = [f"train step: {t['seconds']:.3f} s per batch of {t['batch']} at {h}x{w} "
             f"({t['images_per_s']:.1f} img/s) on {name}"]
    if "train_flops" in t:
        lines.append(f"train step cost: {t['forward_flops'] / 1e9:,.1f} GFLOP forward, "
                     f"{t['train_flops'] / 1e9:,.1f} GFLOP forward + backward")
        if t.get("gflops_per_s"):
            lines.append(f"achieved: {t['gflops_per_s']:,.1f} GFLOP/s = {t['gflops_per_s'] / t['peak_gflops']:.0%} "
                         f"of this device's fp32 matrix-product peak ({t['peak_gflops']:,.1f} GFLOP/s, measured)")
        if t.get("peak_bytes") is not None:
            where = "GPU memory allocated" if t["device"].startswith("cuda") else \
                "resident memory (RSS; includes the host allocator's kept heap: see the next line for the tensors)"
            lines.append(f"peak memory of a step: {t['peak_bytes'] / 2**30:.2f} GiB of {where} "
                         "above the model's weights (activations, gradients, optimiser state)")
    return "\n".join(lines)



#: Published training (identities, images) per data set (train includes validation images).
PUBLISHED_TRAIN = {k: v["train"][:2] for k, v in PUBLISHED.items()}


def training_length(cfg: Any) -> dict[str, Any]:
    """Batches per epoch (one process) and total iterations of ``cfg``'s run.

    Exact from the data set's identities when it is on disk. Otherwise from its published counts:
    exact in the ``identities`` epoch (it needs only the number of identities); estimated in the
    ``images`` epoch, where it depends on each identity's image count: every identity is taken to
    waste (K - 1) / 2 of its images on average (Market-1501, P=16 x K=4: 184 estimated, 185 exact).
    With ``sampler.exhausted: stop`` (BoT's rule) an epoch has at most that many batches (``at_most``).
    Returns {batches, iters_per_epoch (after ``train.iters_per_epoch``), epochs, total, exact, at_most, source}.
    """
    s = cfg.sampler
    p, k, mode, last = int(s.num_ids), int(s.num_instances), str(s.epoch), str(s.last_batch)
    name = str(cfg.dataset.name)
    try:
        pids = [x.pid for x in build_dataset(cfg, verbose=False).train]
        counts = np.unique(np.asarray(pids), return_counts=True)[1]
        batches, exact = batches_per_epoch(counts, p, k, mode, last), True
        source = f"{len(counts)} identities, {len(pids):,} images counted under {cfg.dataset.root}"
    except DatasetError:
        if name not in PUBLISHED_TRAIN:
            raise
        ids, images = PUBLISHED_TRAIN[name]
        source = f"{ids} identities, {images:,} images: the published {name} counts"
        if mode == "identities":
            batches, exact = batches_per_epoch([k] * ids, p, k, mode, last), True
        else:
            batches, exact = max(1, int((images - ids * (k - 1) / 2) / k) // p), False
    at_most = mode == "images" and str(s.exhausted) == "stop"  # BoT's rule: a few fewer, varying by epoch
    per_epoch = min(batches, int(cfg.train.iters_per_epoch)) if cfg.train.iters_per_epoch else batches
    epochs = int(cfg.train.epochs)
    return {"batches": batches, "iters_per_epoch": per_epoch, "epochs": epochs, "total": per_epoch * epochs,
            "exact": exact, "at_most": at_most, "source": source}


def format_training_length(cfg: Any, n: dict[str, Any]) -> str:
    """One line: the sampler's epoch, batches per epoch and total iterations (:func:`training_length`)."""
    s = cfg.sampler
    mode = f"sampler.epoch={s.epoch}" + (f", last_batch={s.last_batch}" if s.epoch == "identities" else "")
    mode += ", exhausted=stop" if n.get("at_most") else ""
    approx = ("at most " if n.get("at_most") else "") + ("" if n["exact"] else "about ")
    capped = n["iters_per_epoch"] < n["batches"]
    cap = f", capped at {n['iters_per_epoch']} by train.iters_per_epoch" if capped else ""
    return (f"epoch ({mode}; P={s.num_ids} x K={s.num_instances}, one process): {approx}{n['batches']} batches"
            f"{cap}; {n['iters_per_epoch']} x {n['epochs']} epochs = {'' if capped else approx}{n['total']:,} "
            f"iterations ({n['source']})")
