"""nn.DataParallel's per-replica behaviour inside one batch ("ghost" BatchNorm), for the releases
whose reference runs split each batch over N GPUs (``train.shards``).

What DataParallel on N GPUs did to a batch x [B, ...] (torch/nn/parallel: ``scatter`` then
``replicate``):

* the batch is cut with ``x.chunk(N)`` (shards of ceil(B / N) images, the last one smaller, fewer
  than N shards when B is small): :func:`shard`;
* each replica's BatchNorm normalises its shard with that shard's own mean and biased variance, so
  training statistics come from B / N images, not B;
* running statistics: ``replicate`` broadcasts the buffers with ``comm.broadcast_coalesced``,
  whose outputs for the first device are the module's own tensors (torch/csrc/cuda/comm.cpp,
  ``outputs[0] = tensors.vec()``); the other replicas get copies that are dropped after the forward.
  So ``running_mean``, ``running_var`` and ``num_batches_tracked`` are updated once per forward, from
  shard 0 alone (unbiased variance of shard 0); the other shards' statistics are lost;
* each replica draws its own random numbers (BDB's drop band: one band per shard).

:class:`GhostBatchNorm` reproduces the first three; :func:`emulate_data_parallel` converts a model
(every ``BatchNorm1d/2d`` and every module with a ``set_shards`` method, e.g. BDB's
:class:`~reid.models.layers.dropblock.BatchDropBlock`). Parameters and buffers are kept, so state
dicts are unchanged. Eval mode is plain BatchNorm with the running statistics.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["GhostBatchNorm", "emulate_data_parallel", "shard"]


def shard(x: torch.Tensor, shards: int) -> tuple[torch.Tensor, ...]:
    """The pieces DataParallel's ``scatter`` makes of ``x`` [B, ...] on ``shards`` GPUs: ``x.chunk(shards)``."""
    return x.chunk(max(1, int(shards)), dim=0)


class GhostBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are per shard of the batch (see the module docstring):
    x [B, C, ...] -> [B, C, ...]; running statistics from shard 0 only. ``shards`` = 1: plain BN."""

    shards: int = 1

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def set_shards(self, shards: int) -> None:
        self.shards = int(shards)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces = shard(x, self.shards)
        if not self.training or len(pieces) == 1:
            return super().forward(x)
        self._check_input_dim(x)
        factor = 0.0
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
        out = [F.batch_norm(pieces[0], self.running_mean, self.running_var, self.weight, self.bias,
                            True, factor, self.eps)]
        out += [F.batch_norm(p, None, None, self.weight, self.bias, True, 0.0, self.eps) for p in pieces[1:]]
        return torch.cat(out, dim=0)


def _convert(module: nn.Module, shards: int) -> nn.Module:
    out = module
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and not isinstance(module, GhostBatchNorm):
        out = GhostBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
    if hasattr(out, "set_shards"):
        out.set_shards(shards)
    for name, child in module.named_children():
        out.add_module(name, _convert(child, shards))
    return out


def emulate_data_parallel(model: nn.Module, shards: int) -> nn.Module:
    """``model`` with every BatchNorm1d/2d made a :class:`GhostBatchNorm` of ``shards`` shards and
    ``set_shards(shards)`` called on every module that has it (the model itself may be replaced
    when it is a BatchNorm; use the return value). ``shards`` = 1 restores plain behaviour."""
    if int(shards) < 1:
        raise ValueError(f"train.shards must be >= 1, got {shards}")
    return _convert(model, int(shards))
