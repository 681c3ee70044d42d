"""Time one training step of a config's network on random data (``tools/train.py --summary``).

The step is the trainer's: forward under the configured autocast, the configured losses, backward,
optimiser step; the batch is P x K random images at ``input.size`` (with random part masks, so
mask-guided losses run), on ``cfg.device``. No data set is read.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from reid.engine.host_memory import keep_freed_host_memory
from reid.engine.optim import build_optimizer
from reid.engine.trainer import amp_dtype, autocast, backward_and_step, resolve_device
from reid.losses import build_losses


def random_batch(cfg: Any, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """images [P*K, 3, H, W] (normalised-looking), pids in P x K order, binary masks [P*K, 3, H, W]
    with every ``mask_valid`` [P*K] flag true (the training batch's keys)."""
    p, k = int(cfg.sampler.num_ids), int(cfg.sampler.num_instances)
    h, w = int(cfg.input.size[0]), int(cfg.input.size[1])
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randn(p * k, 3, h, w, generator=g).to(device),
            "pids": torch.arange(p).repeat_interleave(k).to(device),
            "masks": (torch.rand(p * k, 3, h, w, generator=g) > 0.5).to(device),
            "mask_valid": torch.ones(p * k, dtype=torch.bool, device=device)}


def time_train_step(cfg: Any, model: nn.Module, steps: int = 2, warmup: int = 1) -> dict[str, Any]:
    """Seconds per training step of ``model`` (built from ``cfg.model``), the mean over ``steps``
    timed steps after ``warmup`` untimed ones. Returns {seconds, images_per_s, batch, size, device}.
    The model's weights are changed by the optimiser steps."""
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        keep_freed_host_memory()
    model = model.to(device).train()
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    losses = build_losses(cfg.losses).to(device)
    optimizer = build_optimizer(cfg.optimizer, model)
    dtype = amp_dtype(cfg.train.amp, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    batch = random_batch(cfg, device)

    def step() -> None:
        with autocast(device, dtype):
            total, _ = losses(model(batch["images"]), batch)
        backward_and_step(total, optimizer, scaler, model.parameters(), float(cfg.train.grad_clip or 0))
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / max(steps, 1)
    n = int(batch["images"].shape[0])
    return {"seconds": seconds, "images_per_s": n / seconds, "batch": n,
            "size": tuple(int(v) for v in cfg.input.size), "device": str(device)}


def format_step_time(t: dict[str, Any]) -> str:
    h, w = t["size"]
    name = torch.cuda.get_device_name(t["device"]) if t["device"].startswith("cuda") else \
        f"cpu, {torch.get_num_threads()} threads"
    return (f"train step: {t['seconds']:.3f} s per batch of {t['batch']} at {h}x{w} "
            f"({t['images_per_s']:.1f} img/s) on {name}")
