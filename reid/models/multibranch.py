"""The multi-branch network builder (LAGA-Net, MGN, PCB, BoT, ... are configurations of it).

    x [B,3,H,W] -> trunk (stem .. `trunk` stage, e.g. layer3 or layer3[0])
      -> branch i: before-attention -> own copy of the remaining stages (last one's stride set)
                   -> after-attention -> pooling (global vector and/or K horizontal stripes)
                   -> one head per pooled vector (-> triplet feature, test feature, logits)

Training outputs ``{"logits": [L x [B, num_classes]], "features": [T x [B, D]]}`` (T: the heads
whose feature feeds the triplet loss); eval ``{"features": [B, sum of test dims]}``, the
concatenation of every head's test feature in branch order.

A branch is a dict in the model config (keys: :class:`BranchSpec`); attention modules are
``{name: <LAYERS name>, **kwargs}``; ``channels`` (and ``height``/``width`` for layers that take
them) are filled in from the backbone's ``output_shape()`` at that point. The pooling and the head
are registered components (``POOLINGS``, ``HEADS``) named as ``<name>`` or ``{name: <name>, **kwargs}``.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Annotated, Any

import torch
from torch import nn

from reid.checks import Count, Dim, Range, Rate, Size, declared_check, keyword_error
from reid.models.backbones.base import ShapeSpec, parse_trunk
from reid.models.build import backbone_groups, build_backbone
from reid.models.heads import HeadOutput, StripePool, init_scheme
from reid.models.heads.pooling import STRIPE_MODES
from reid.models.layers.common import same_start
from reid.registry import HEADS, LAYERS, MODELS, POOLINGS, ConfigError, Registry, suggestion

__all__ = ["BranchSpec", "Branch", "MultiBranchNet", "parse_trunk", "build_layer"]

#: branch-level head options (BranchSpec field -> head keyword): passed to the head when its
#: constructor takes that keyword; a ``head: {name, **kwargs}`` mapping's own kwargs win.
HEAD_OPTIONS = {"head_dim": "dim", "dropout": "dropout", "neck_feat": "neck_feat", "triplet_input": "triplet_input"}


def component(spec: Any, registry: Registry, where: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``{name: ..., **kwargs}`` -> (name, kwargs), checked against ``registry``."""
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, dict) and isinstance(spec.get("name"), str):
        kwargs = {k: copy.deepcopy(v) for k, v in spec.items() if k != "name"}
        name = spec["name"]
    else:
        raise ConfigError(f"{where}: expects a {registry.kind} name or a mapping with a 'name' "
                          f"({', '.join(registry.names())}), got {spec!r}")
    if name not in registry:
        raise ConfigError(f"{where}: unknown {registry.kind} '{name}'{suggestion(name, registry.names())}")
    registry.check_kwargs(name, kwargs, where)
    return name, kwargs


@dataclasses.dataclass
class BranchSpec:
    """One branch of a :class:`MultiBranchNet`, parsed from a config dict.

    name: label of the branch (heads are named ``name`` or ``name.p<k>`` for stripes).
    stride: stride of the last backbone stage in this branch (None: the backbone's last_stride).
    before / after: attention modules ``[{name: cam, ...}]`` before / after the branch's stages.
    pooling: a ``POOLINGS`` name (avg | max | avgmax | gem) or ``{name, **kwargs}``.
    global_feature: emit the pooled map as a feature.
    stripes: emit K horizontal stripe features (pooled by the pooling's name when it is avg, max or
    avgmax; otherwise, e.g. gem, by avg).
    head: a ``HEADS`` name (reduction (LAGA) | bnneck (BoT) | conv_reduction (MGN, PCB) | identity) or
    ``{name, **kwargs}``. head_dim, dropout, neck_feat and triplet_input are branch-level head options
    (:data:`HEAD_OPTIONS`), given to the head when it takes them: head_dim the embedding width,
    neck_feat (bnneck, conv_reduction) the test feature after or before the neck, triplet_input
    (reduction) the triplet feature before the dropout (``embedding``, LAGA-Net's paper) or after it.
    triplet / stripe_triplet: whether the global / stripe features feed the ``features`` output
    (the triplet loss).
    shared_reduction: the stripe heads (conv_reduction) share ONE Conv1x1 + BN, applied to all stripes
    at once so that the BN statistics pool the B x K stripe vectors (PCB's release, ``resnet.py:46,49,
    137-139``: one ``local_conv`` + ``feat_bn2d`` on the [B, C, 6, 1] map); each stripe keeps its own
    classifier. False: one reduction per stripe.
    """

    name: str = ""
    stride: Annotated[int | None, Range(1, 2)] = None
    before: list = dataclasses.field(default_factory=list)
    after: list = dataclasses.field(default_factory=list)
    pooling: Any = "avg"
    global_feature: bool = True
    stripes: Count = 0
    head: Any = "reduction"
    head_dim: Dim = 1024
    dropout: Rate = 0.5
    neck_feat: str = "after"
    triplet: bool = True
    stripe_triplet: bool = True
    triplet_input: str = "embedding"
    shared_reduction: bool = False

    @property
    def pooling_name(self) -> str:
        return self.pooling if isinstance(self.pooling, str) else self.pooling["name"]

    @property
    def head_name(self) -> str:
        return self.head if isinstance(self.head, str) else self.head["name"]

    def head_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the head: the branch-level options it takes, then the mapping's own."""
        params = HEADS.parameters(self.head_name)
        kwargs = {kw: getattr(self, field) for field, kw in HEAD_OPTIONS.items() if kw in params}
        if isinstance(self.head, dict):
            kwargs.update({k: v for k, v in self.head.items() if k != "name"})
        return kwargs

    @classmethod
    def parse(cls, spec: Any, index: int) -> BranchSpec:
        """Validate a branch dict: unknown keys and wrong types are ConfigErrors naming the key."""
        where = f"model.branches[{index}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be a mapping of branch options, got {spec!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in spec.items():
            if key not in fields:
                raise ConfigError(f"{where}: unknown branch key '{key}'{suggestion(key, fields)}")
            default = fields[key].default
            if key in ("pooling", "head"):
                continue  # a name or {name, **kwargs}: checked below
            if default is dataclasses.MISSING:  # list fields
                ok = isinstance(value, list)
                kind = "a list"
            elif key == "stride":
                ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
                kind = "an int or null"
            elif isinstance(default, bool):
                ok, kind = isinstance(value, bool), "a bool"
            elif isinstance(default, int):
                ok, kind = isinstance(value, int) and not isinstance(value, bool), "an int"
            elif isinstance(default, float):
                ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
            else:
                ok, kind = isinstance(value, str), "a string"
            if not ok:
                raise ConfigError(f"{where}: key '{key}' expects {kind}, got {value!r}")
            message = None if value is None else keyword_error(key, value, declared_check(fields[key].type,
                                                                                          globals())[1], default)
            if message:
                raise ConfigError(f"{where}: {message}")
        out = cls(**{k: copy.deepcopy(v) for k, v in spec.items()})
        out.name = out.name or f"branch{index}"
        component(out.pooling, POOLINGS, f"{where}.pooling")
        head, head_kwargs = component(out.head, HEADS, f"{where}.head")
        for key in ("in_dim", "num_classes"):
            if key in head_kwargs:
                raise ConfigError(f"{where}.head: '{key}' is set by the network; remove it")
        takes = HEADS.parameters(head)
        for field, kw in HEAD_OPTIONS.items():
            if field in spec and kw not in takes:
                users = [h for h in HEADS.names() if kw in HEADS.parameters(h)]
                raise ConfigError(f"{where}: {field} applies to head {' / '.join(repr(h) for h in users)} only "
                                  f"(this branch: '{head}')")
        if out.shared_reduction and (out.head_name != "conv_reduction" or out.stripes < 2):
            raise ConfigError(f"{where}: shared_reduction needs head 'conv_reduction' and stripes >= 2")
        if not out.global_feature and out.stripes < 1:
            raise ConfigError(f"{where}: a branch needs global_feature: true or stripes >= 1")
        for attn in out.before + out.after:
            if not isinstance(attn, dict) or not isinstance(attn.get("name"), str):
                raise ConfigError(f"{where}: attention entries are mappings with a 'name' "
                                  f"({', '.join(LAYERS.names())}), got {attn!r}")
            if attn["name"] not in LAYERS:
                raise ConfigError(f"{where}: unknown layer '{attn['name']}'{suggestion(attn['name'], LAYERS.names())}")
            LAYERS.check_kwargs(attn["name"], {k: v for k, v in attn.items() if k != "name"}, where)
        return out


def build_layer(spec: dict, shape: ShapeSpec, input_size: tuple[int, int] | None, where: str) -> nn.Module:
    """An attention module from ``{name, **kwargs}`` for a map of ``shape`` (its size from ``input_size``)."""
    kwargs = dict(spec)
    name = kwargs.pop("name")
    params = LAYERS.parameters(name)
    for key in ("channels", "height", "width"):
        if key in kwargs:
            raise ConfigError(f"{where}: '{key}' of layer '{name}' is set by the network; remove it")
    sized = [k for k in ("height", "width") if k in params]
    if sized and input_size is None:
        raise ConfigError(
            f"{where}: layer '{name}' depends on the feature-map size: set model.input_size to the "
            "input size [H, W] or build with build_model(cfg.model, num_classes, input_size=cfg.input.size)"
        )
    if sized:
        height, width = shape.size(input_size)
        if "height" in params:
            kwargs["height"] = height
        if "width" in params:
            kwargs["width"] = width
    return LAYERS.build(name, shape.channels, where=where, **kwargs)


class Branch(nn.Module):
    """before -> stages -> after -> pooling -> heads; [B, C, h, w] -> list of HeadOutput."""

    def __init__(self, spec: BranchSpec, stages: nn.Module, before: list[nn.Module], after: list[nn.Module],
                 channels: int, num_classes: int, init: str = "default"):
        super().__init__()
        self.spec = spec
        self.before = nn.Sequential(*before)
        self.stages = stages
        self.after = nn.Sequential(*after)
        pool_name, pool_kwargs = component(spec.pooling, POOLINGS, "pooling")
        self.global_pool = POOLINGS.build(pool_name, **pool_kwargs) if spec.global_feature else None
        stripe_mode = pool_name if pool_name in STRIPE_MODES else "avg"
        self.stripe_pool = StripePool(spec.stripes, stripe_mode) if spec.stripes else None
        n_heads = int(spec.global_feature) + spec.stripes
        kwargs = spec.head_kwargs()
        if "init" in HEADS.parameters(spec.head_name):
            kwargs.setdefault("init", init)
        self.heads = nn.ModuleList(HEADS.build(spec.head_name, channels, num_classes, **kwargs)
                                   for _ in range(n_heads))
        if spec.shared_reduction:  # one module object: its parameters appear under each head's key
            first = self.heads[int(spec.global_feature)]
            for head in list(self.heads)[int(spec.global_feature) + 1:]:
                head.reduction = first.reduction
        self.head_names = ([spec.name] if spec.global_feature else []) + [
            f"{spec.name}.p{k + 1}" for k in range(spec.stripes)]
        self.triplet_flags = ([spec.triplet] if spec.global_feature else []) + [spec.stripe_triplet] * spec.stripes

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk map [B, C, h, w] -> the branch's map after its stages and attention."""
        return self.after(self.stages(self.before(x)))

    def forward(self, x: torch.Tensor) -> list[HeadOutput]:
        fmap = self.feature_map(x)
        pooled = [self.global_pool(fmap)] if self.global_pool is not None else []
        outs = [head(v) for head, v in zip(self.heads, pooled)]
        if self.stripe_pool is None:
            return outs
        stripes = self.stripe_pool(fmap)
        heads = list(self.heads)[len(outs):]
        if not self.spec.shared_reduction:
            return outs + [head(v) for head, v in zip(heads, stripes)]
        # image-major [B * K, C], so that a shard of the batch (train.shards) holds whole images
        x = torch.stack(stripes, dim=1)
        r = heads[0].reduce(x.flatten(0, 1)).view(x.shape[0], x.shape[1], -1)
        return outs + [head.from_reduced(v, r[:, k]) for k, (head, v) in enumerate(zip(heads, stripes))]


@MODELS.register("multibranch")
class MultiBranchNet(nn.Module):
    """Shared trunk + N branches (see the module docstring); ``branches`` is a list of
    :class:`BranchSpec` dicts; ``share_layer4`` makes all branches share one copy of the stages
    after the trunk (the MBA code's behaviour). ``input_size`` [H, W]: the input size the
    size-dependent layers (SAM-RPE) are built for; null takes ``input.size`` (via build_model).
    ``init``: the heads' init scheme (default | mgn | bdb | lagnet, :mod:`reid.models.heads.init`).
    ``same_init``: every head's ``reduction`` (conv_reduction heads) starts as a copy of the first
    one, as MGN-pytorch's one reduction deep-copied eight times; False: each drawn on its own."""

    @staticmethod
    def check_keywords(kwargs: dict[str, Any]) -> None:
        """Load-time check of the keywords (reid.config calls it): the trunk and every branch
        (:meth:`BranchSpec.parse`, its components' declared ranges included)."""
        parse_trunk(kwargs["trunk"])
        if not isinstance(kwargs["branches"], list) or not kwargs["branches"]:
            raise ConfigError(f"model.branches must be a non-empty list of branch mappings, got {kwargs['branches']!r}")
        for i, spec in enumerate(kwargs["branches"]):
            BranchSpec.parse(spec, i)

    def __init__(self, num_classes: int,
                 backbone: dict = {"name": "resnet50", "last_stride": 1},  # noqa: B006
                 trunk: str = "layer3",
                 branches: list = [{"name": "global"}],  # noqa: B006
                 share_layer4: bool = False, input_size: Size = None, init: str = "default",
                 same_init: bool = False):
        super().__init__()
        init_scheme(init, "model.init")
        specs = [BranchSpec.parse(b, i) for i, b in enumerate(branches)]
        if not specs:
            raise ConfigError("model.branches must list at least one branch")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"model.branches: branch names must be unique, got {names}")
        net = build_backbone(backbone)
        split = net.split(trunk)
        self.trunk = nn.Sequential(*split.trunk)
        self.share_layer4 = share_layer4
        if input_size is not None and (len(input_size) != 2 or not all(isinstance(v, int) and v > 0
                                                                       for v in input_size)):
            raise ConfigError(f"model.input_size must be [height, width] or null, got {input_size}")
        self.input_size = (int(input_size[0]), int(input_size[1])) if input_size is not None else None
        strides = {s.stride for s in specs}
        if share_layer4 and len(strides) > 1:
            raise ConfigError(f"model.share_layer4 needs one stride for all branches, got {sorted(strides, key=str)}")

        # branch 0 takes the backbone's own modules, the others deep copies (taken before any
        # stride is changed); with share_layer4 every branch uses the same object
        n_copies = 1 if share_layer4 else len(specs)
        copies = [split.branch] + [copy.deepcopy(split.branch) for _ in range(n_copies - 1)]
        stage_sets = []
        for i, spec in enumerate(specs[:n_copies]):
            if spec.stride is not None and split.strides_last and copies[i]:
                net.set_stride(copies[i][-1], spec.stride)
            stage_sets.append(nn.Sequential(*copies[i]))
        built = []
        for i, spec in enumerate(specs):
            stages = stage_sets[0 if share_layer4 else i]
            out_shape = split.branch_output(spec.stride) if split.branch else split.trunk_shape
            where = f"model.branches[{i}]"
            before = [build_layer(a, split.trunk_shape, self.input_size, f"{where}.before[{j}]")
                      for j, a in enumerate(spec.before)]
            after = [build_layer(a, out_shape, self.input_size, f"{where}.after[{j}]")
                     for j, a in enumerate(spec.after)]
            built.append(Branch(spec, stages, before, after, out_shape.channels, num_classes, init))
        self.branches = nn.ModuleList(built)
        if same_init:
            reductions = list({id(h.reduction): h.reduction for b in self.branches for h in b.heads
                               if isinstance(getattr(h, "reduction", None), nn.Module)}.values())
            if len({tuple(p.shape for p in r.parameters()) for r in reductions}) > 1:
                raise ConfigError("model.same_init needs heads whose reductions have one shape (one head_dim)")
            same_start(reductions)
        self.head_names = [n for b in self.branches for n in b.head_names]
        self.test_dim = sum(h.test_dim for b in self.branches for h in b.heads)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        """x [B, 3, H, W] -> named outputs (see the module docstring)."""
        t = self.trunk(x)
        outs: list[HeadOutput] = []
        flags: list[bool] = []
        for branch in self.branches:
            outs += branch(t)
            flags += branch.triplet_flags
        if self.training:
            return {"logits": [o.logits for o in outs], "features": [o.feature for o, f in zip(outs, flags) if f]}
        return {"features": torch.cat([o.test for o in outs], dim=1)}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """backbone: trunk and the branches' copies of backbone stages; new: attention, heads."""
        return backbone_groups(self, self.trunk, *(b.stages for b in self.branches))
