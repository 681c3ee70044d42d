"""Global-batch helpers for DDP: output/label gathering with gradients, and a SyncBN for any device.

Gradient semantics. Every rank computes the *same* loss ``L`` over the gathered global batch. The
backward of :func:`torch.distributed.nn.functional.all_gather` (and ``all_reduce``) sums the
gradients of all ranks' copies of ``L``, so rank ``r``'s local parameters receive
``world_size * dL/dtheta_r``; DDP then averages over ranks, which gives exactly ``dL/dtheta``: the
gradient of a single process on the same global batch.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the backward sums the incoming gradients over ranks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class _AllGather(torch.autograd.Function):
    """Concatenation over ranks along dim 0; the backward sums the gradient of the concatenation
    over ranks and keeps this rank's slice (a reduce-scatter, done as all-reduce for gloo)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.n, ctx.rank = x.shape[0], dist.get_rank()
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(x) if world() > 1 else x


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``x`` along dim 0 (in rank order); differentiable."""
    if world() == 1:
        return x
    return _AllGather.apply(x.contiguous())


@torch.no_grad()
def gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``x`` along dim 0 (in rank order); labels, masks."""
    if world() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def shard_bounds(n: int) -> tuple[int, int]:
    """This rank's contiguous slice [start, end) of ``n`` items split evenly over the ranks."""
    if world() == 1:
        return 0, n
    rank, size = dist.get_rank(), world()
    return n * rank // size, n * (rank + 1) // size


@torch.no_grad()
def gather_shards(x: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """Concatenate every rank's shard ``x`` [n_r, ...] (the :func:`shard_bounds` slices of ``n``
    items, sizes differing by at most one) into [n, ...] on the CPU; ``device`` carries the
    collective (CUDA for NCCL)."""
    if world() == 1:
        return x
    size = world()
    longest = -(-n // size)
    padded = torch.zeros(longest, *x.shape[1:], dtype=x.dtype, device=device)
    padded[: len(x)] = x.to(device)
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    lengths = [n * (r + 1) // size - n * r // size for r in range(size)]
    return torch.cat([part[:k] for part, k in zip(parts, lengths)]).cpu()


def gather_outputs(outputs: Any, local_batch: int) -> Any:
    """Gather a model's outputs (dict / list / tensor) across ranks, with gradients.

    Tensors whose first dimension is the local batch size are concatenated over ranks; anything
    else (scalars, per-model tensors) is passed through unchanged.
    """
    if isinstance(outputs, torch.Tensor):
        if outputs.dim() > 0 and outputs.shape[0] == local_batch:
            return gather_with_grad(outputs) if outputs.requires_grad else gather_nograd(outputs)
        return outputs
    if isinstance(outputs, dict):
        return {k: gather_outputs(v, local_batch) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(gather_outputs(v, local_batch) for v in outputs)
    return outputs


def gather_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The global batch's labels (``pids``, ``camids``, ``masks``...); ``images`` are not gathered."""
    return {k: (gather_nograd(v) if k != "images" else v) for k, v in batch.items()}


class GlobalBatchNorm(_BatchNorm):
    """Synchronised batch norm over the whole process group, on any device and backend (gloo too).

    Statistics are two-pass (mean, then mean squared deviation), each an all-reduce of
    [sum, count] with autograd, so forward and backward equal a single :class:`BatchNorm` over the
    concatenated global batch. Outside training, or without a process group, it is plain batch norm.
    ``torch.nn.SyncBatchNorm`` is faster on CUDA and is used there (:func:`convert_sync_bn`).
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        count = torch.full((1,), x.numel() // c, dtype=x.dtype, device=x.device)
        stats = all_reduce_sum(torch.cat([x.sum(dims), count]))
        n = stats[c]
        mean = stats[:c] / n
        shape = [1, c] + [1] * (x.dim() - 2)
        xc = x - mean.view(shape)
        var = all_reduce_sum((xc * xc).sum(dims)) / n
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                unbiased = var.detach() * (n / (n - 1).clamp(min=1))
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        return y


def convert_sync_bn(module: nn.Module, device: torch.device) -> nn.Module:
    """Every ``BatchNorm*d`` of ``module`` made synchronous: ``nn.SyncBatchNorm`` on CUDA,
    :class:`GlobalBatchNorm` elsewhere (torch's SyncBN is GPU-only). Parameters, buffers and
    ``requires_grad`` flags are kept, so state dicts are unchanged."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        if module.track_running_stats:
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
    for name, child in module.named_children():
        out.add_module(name, convert_sync_bn(child, device))
    return out
