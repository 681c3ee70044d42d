"""Small helpers shared by the attention layers."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def check_feature_map(x: torch.Tensor, channels: int, size: tuple[int, int] | None, name: str) -> None:
    """Raise ValueError unless ``x`` is [B, channels, H, W] (and (H, W) == size when given)."""
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{name}: expected input [B, {channels}, H, W], got {list(x.shape)}")
    if size is not None and tuple(x.shape[2:]) != tuple(size):
        raise ValueError(
            f"{name}: built for {size[0]}x{size[1]} feature maps, got {x.shape[2]}x{x.shape[3]} "
            "(its parameters depend on the map size: check the input image size and strides)"
        )


def conv_bn(in_ch: int, out_ch: int, relu: bool = True, eps: float = 1e-5) -> nn.Sequential:
    """Conv1x1(in_ch -> out_ch, bias False) + BatchNorm2d (+ ReLU)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_ch, eps=eps),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def checkpointed(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` with activation checkpointing: its intermediate activations are not kept for
    backward but recomputed then (memory for time). The recomputation leaves the BatchNorm running
    statistics alone, so a checkpointed module trains exactly as a plain one."""
    calls = [0]

    def run(inp: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 1:
            return module(inp)
        norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
                 for m in norms]
        for m in norms:
            m.momentum = 0.0  # running = 1 * running + 0 * batch: unchanged
        try:
            return module(inp)
        finally:
            for m, (momentum, tracked) in zip(norms, saved):
                m.momentum = momentum
                if tracked is not None:
                    m.num_batches_tracked.copy_(tracked)

    return checkpoint(run, x, use_reentrant=False)


def same_start(modules: list[nn.Module]) -> None:
    """Give every module of ``modules`` the first one's parameters and buffers (copies, not shared):
    what one initialised module deep-copied N times starts from (MGN-pytorch ``model/mgn.py:58-66``,
    LAG-Net ``lagnet/model/lag.py:123-132``). Modules of another shape than the first are an error."""
    if not modules:
        return
    state = modules[0].state_dict()
    for m in modules[1:]:
        m.load_state_dict(state)
