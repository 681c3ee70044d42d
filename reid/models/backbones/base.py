"""The backbone contract: named stages, their output shapes, and the trunk/branch split.

A backbone (modelled on detectron2's ``Backbone``/``ShapeSpec``) is a chain of named stages
``stem, layer1, layer2, layer3, layer4``. ``output_shape()`` gives each stage's output channels and
stride (input pixels per map cell), so networks size their layers without a trial forward pass;
``split(trunk)`` cuts the chain into the trunk (shared by every branch) and the rest (copied per
branch, the last stage's stride settable per copy). A new backbone subclasses :class:`Backbone`,
implements ``stage`` and ``output_shape`` (and ``set_stride`` when a stage's stride can change),
and registers a factory in ``BACKBONES``.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re

import torch
from torch import nn

from reid.registry import ConfigError, UserError

STAGE_NAMES = ("stem", "layer1", "layer2", "layer3", "layer4")


@dataclasses.dataclass(frozen=True)
class ShapeSpec:
    """A stage's output: ``channels`` and ``stride`` (input pixels per map cell)."""

    channels: int
    stride: int

    def size(self, input_size: tuple[int, int] | list[int]) -> tuple[int, int]:
        """(h, w) of the map for an input (H, W): every stride-2 layer of the backbones rounds up
        (3x3 padding 1, 7x7 padding 3, 1x1 padding 0, 3x3 max pool padding 1), so h = ceil(H / stride)."""
        return math.ceil(input_size[0] / self.stride), math.ceil(input_size[1] / self.stride)


class WeightsError(UserError, FileNotFoundError):
    """Pretrained weights requested but not found where they were expected."""


def set_stage_stride(stage: nn.Module, stride: int) -> nn.Module:
    """Set the stride of a stage (its first block's strided convs) in place; returns ``stage``.

    Works for ResNet stages (blocks with ``strided_convs``) and other backbones whose first block
    exposes ``depthwise`` (MobileNetV2).
    """
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    first = stage[0] if isinstance(stage, nn.Sequential) else stage
    if isinstance(first, nn.Sequential):  # e.g. a MobileNetV2 stage view of blocks
        first = first[0]
    if hasattr(first, "strided_convs"):
        convs = first.strided_convs()
    elif hasattr(first, "depthwise"):
        convs = [first.depthwise]
    else:
        raise TypeError(f"cannot set the stride of a {type(first).__name__} stage")
    for conv in convs:
        conv.stride = (stride, stride)
    return stage


def parse_trunk(trunk: str) -> tuple[int, int | None]:
    """'layer3' -> (3, None): stages 1..3 in the trunk; 'layer3[0]' or 'layer3.0' -> (3, 0): layer3's
    block 0 in the trunk, its later blocks in the branches."""
    m = re.fullmatch(r"layer([1-4])(?:\[(\d+)\]|\.(\d+))?", trunk.strip())
    if not m:
        raise ConfigError(f"model.trunk must look like 'layer3' or 'layer3[0]', got '{trunk}'")
    block = m[2] if m[2] is not None else m[3]
    return int(m[1]), None if block is None else int(block)


@dataclasses.dataclass
class TrunkSplit:
    """The backbone cut at ``trunk``.

    trunk: shared modules, [stem, layer1, ..., the trunk stage or its first blocks (a Sequential slice)].
    branch: the remaining modules (the backbone's own): [later blocks of the trunk stage,] later stages.
    trunk_shape / branch_shape: the output shapes of trunk and branch (backbone strides).
    strides_last: whether the branch holds the last stage's strided first block (so a branch may set
    its own last stride).
    """

    backbone: Backbone
    trunk: list[nn.Module]
    branch: list[nn.Module]
    trunk_shape: ShapeSpec
    branch_shape: ShapeSpec
    strides_last: bool

    def branch_output(self, stride: int | None = None) -> ShapeSpec:
        """The branch's output shape when its last stage has ``stride`` (None: the backbone's)."""
        if stride is None or not self.strides_last:
            return self.branch_shape
        last = self.backbone.stage_names[-1]
        own = self.backbone.stage_stride(last)
        return ShapeSpec(self.branch_shape.channels, self.branch_shape.stride // own * stride)

    def copy_branch(self, stride: int | None = None) -> list[nn.Module]:
        """A deep copy of the branch modules, the last stage's stride set when given."""
        parts = copy.deepcopy(self.branch)
        if stride is not None and self.strides_last and parts:
            self.backbone.set_stride(parts[-1], stride)
        return parts


class Backbone(nn.Module):
    """Base class of backbones: stages ``stage_names`` run in order, [B, 3, H, W] -> the last map.

    Subclasses implement :meth:`stage` (the stage module, sharing parameters), :meth:`output_shape`
    and, for per-branch strides, :meth:`set_stride`.
    """

    stage_names: tuple[str, ...] = STAGE_NAMES

    def stage(self, name: str) -> nn.Module:
        raise NotImplementedError

    def output_shape(self) -> dict[str, ShapeSpec]:
        """{stage name: ShapeSpec(channels, stride)} of every stage's output."""
        raise NotImplementedError

    def set_stride(self, stage: nn.Module, stride: int) -> nn.Module:
        """Set the stride of ``stage`` (a stage module or a copy of one) in place; returns it."""
        raise NotImplementedError(f"{type(self).__name__} cannot change a stage's stride")

    def _check_stage(self, name: str) -> None:
        if name not in self.stage_names:
            raise KeyError(f"unknown stage '{name}'; stages: {', '.join(self.stage_names)}")

    @property
    def stage_channels(self) -> list[int]:
        """Output channels of the stages after the stem."""
        shapes = self.output_shape()
        return [shapes[s].channels for s in self.stage_names[1:]]

    @property
    def feature_dim(self) -> int:
        """Channels of the last stage's map."""
        return self.output_shape()[self.stage_names[-1]].channels

    def stage_stride(self, name: str) -> int:
        """The stride stage ``name`` itself applies (its output stride over its input's)."""
        shapes = self.output_shape()
        i = self.stage_names.index(name)
        return shapes[name].stride // (shapes[self.stage_names[i - 1]].stride if i else 1)

    def branch_stage(self, name: str, stride: int | None = None) -> nn.Module:
        """A deep copy of stage ``name`` (independent parameters), its stride set when given."""
        stage = copy.deepcopy(self.stage(name))
        return self.set_stride(stage, stride) if stride is not None else stage

    def split(self, trunk: str) -> TrunkSplit:
        """Cut at ``trunk`` ('layer3': stem..layer3 shared; 'layer3[0]': also layer3's block 0 shared,
        its later blocks per branch); see :class:`TrunkSplit`."""
        stage_idx, block = parse_trunk(trunk)
        names = self.stage_names
        shapes = self.output_shape()
        parts: list[nn.Module] = [self.stage(s) for s in names[:stage_idx]]
        last = self.stage(names[stage_idx])
        rest: list[nn.Module] = []
        if block is None:
            parts.append(last)
        else:
            if not isinstance(last, nn.Sequential) or not 0 <= block < len(last) - 1:
                raise ConfigError(f"model.trunk '{trunk}': block index out of range for this backbone")
            parts.append(last[: block + 1])
            rest.append(last[block + 1:])
        rest += [self.stage(s) for s in names[stage_idx + 1:]]
        strides_last = stage_idx < len(names) - 1
        return TrunkSplit(self, parts, rest, shapes[names[stage_idx]], shapes[names[-1]], strides_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> the last stage's map [B, feature_dim, H / stride, W / stride]."""
        for name in self.stage_names:
            x = self.stage(name)(x)
        return x


#: Every registered backbone (ResNet, MobileNetV2) halves its input 4 times before its last stage.
STRIDE_BEFORE_LAST_STAGE = 16


def output_stride(last_stride: int) -> int:
    """Input pixels per cell of a backbone's last map when its last stage has ``last_stride``."""
    return STRIDE_BEFORE_LAST_STAGE * last_stride
