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
them) are filled in from the feature map at that point.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

import torch
from torch import nn

from reid.models.backbones.resnet import set_stage_stride
from reid.models.bot import build_backbone
from reid.models.build import backbone_groups
from reid.models.heads import HEADS, POOLINGS, HeadOutput, build_head, build_pooling, init_scheme
from reid.models.heads.heads import TRIPLET_INPUTS
from reid.registry import LAYERS, MODELS, ConfigError, suggestion

STAGES = ("layer1", "layer2", "layer3", "layer4")
PROBE_SIZE = (64, 32)  # probe input when the input size is unknown (channels only)


@dataclasses.dataclass
class BranchSpec:
    """One branch of a :class:`MultiBranchNet`, parsed from a config dict.

    name: label of the branch (heads are named ``name`` or ``name.p<k>`` for stripes).
    stride: stride of the last backbone stage in this branch (None: the backbone's last_stride).
    before / after: attention modules ``[{name: cam, ...}]`` before / after the branch's stages.
    pooling: avg | max | avgmax | gem. global_feature: emit the pooled map as a feature.
    stripes: emit K horizontal stripe features (pooled with ``pooling``; gem falls back to avg).
    head: reduction (LAGA) | bnneck (BoT) | conv_reduction (MGN, PCB) | identity; head_dim, dropout
    and neck_feat (bnneck, conv_reduction: test feature after or before the neck) configure it.
    triplet / stripe_triplet: whether the global / stripe features feed the ``features`` output
    (the triplet loss). triplet_input (head reduction only): the triplet sees the learned embedding
    before the dropout (``embedding``, LAGA-Net's paper) or after it (``dropout``).
    """

    name: str = ""
    stride: int | None = None
    before: list = dataclasses.field(default_factory=list)
    after: list = dataclasses.field(default_factory=list)
    pooling: str = "avg"
    global_feature: bool = True
    stripes: int = 0
    head: str = "reduction"
    head_dim: int = 1024
    dropout: float = 0.5
    neck_feat: str = "after"
    triplet: bool = True
    stripe_triplet: bool = True
    triplet_input: str = "embedding"

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
        out = cls(**{k: copy.deepcopy(v) for k, v in spec.items()})
        out.name = out.name or f"branch{index}"
        if out.pooling not in POOLINGS[:4]:
            raise ConfigError(f"{where}: unknown pooling '{out.pooling}'{suggestion(out.pooling, POOLINGS[:4])}")
        if out.head not in HEADS:
            raise ConfigError(f"{where}: unknown head '{out.head}'{suggestion(out.head, HEADS)}")
        if out.triplet_input not in TRIPLET_INPUTS:
            raise ConfigError(f"{where}: unknown triplet_input '{out.triplet_input}'"
                              f"{suggestion(out.triplet_input, TRIPLET_INPUTS)}")
        if out.head != "reduction" and "triplet_input" in spec:
            raise ConfigError(f"{where}: triplet_input applies to head 'reduction' only (this branch: '{out.head}')")
        if not out.global_feature and out.stripes < 1:
            raise ConfigError(f"{where}: a branch needs global_feature: true or stripes >= 1")
        for attn in out.before + out.after:
            if not isinstance(attn, dict) or not isinstance(attn.get("name"), str):
                raise ConfigError(f"{where}: attention entries are mappings with a 'name' "
                                  f"({', '.join(LAYERS.names())}), got {attn!r}")
            if attn["name"] not in LAYERS:
                raise ConfigError(f"{where}: unknown layer '{attn['name']}'{suggestion(attn['name'], LAYERS.names())}")
        return out


def parse_trunk(trunk: str) -> tuple[int, int | None]:
    """'layer3' -> (3, None): stages 1..3 in the trunk; 'layer3[0]' or 'layer3.0' -> (3, 0): layer3's
    block 0 in the trunk, its later blocks in the branches."""
    m = re.fullmatch(r"layer([1-4])(?:\[(\d+)\]|\.(\d+))?", trunk.strip())
    if not m:
        raise ConfigError(f"model.trunk must look like 'layer3' or 'layer3[0]', got '{trunk}'")
    block = m[2] if m[2] is not None else m[3]
    return int(m[1]), None if block is None else int(block)


def build_layer(spec: dict, shape: torch.Size, input_known: bool, where: str) -> nn.Module:
    """An attention module from ``{name, **kwargs}`` for a map of ``shape`` [1, C, H, W]."""
    kwargs = dict(spec)
    name = kwargs.pop("name")
    params = LAYERS.parameters(name)
    for key in ("channels", "height", "width"):
        if key in kwargs:
            raise ConfigError(f"{where}: '{key}' of layer '{name}' is set by the network; remove it")
    sized = [k for k in ("height", "width") if k in params]
    if sized and not input_known:
        raise ConfigError(
            f"{where}: layer '{name}' depends on the feature-map size: set model.input_size to the "
            "input size [H, W] or build with build_model(cfg.model, num_classes, input_size=cfg.input.size)"
        )
    if "height" in params:
        kwargs["height"] = int(shape[2])
    if "width" in params:
        kwargs["width"] = int(shape[3])
    return LAYERS.build(name, int(shape[1]), where=where, **kwargs)


class Branch(nn.Module):
    """before -> stages -> after -> pooling -> heads; [B, C, h, w] -> list of HeadOutput."""

    def __init__(self, spec: BranchSpec, stages: nn.Module, before: list[nn.Module], after: list[nn.Module],
                 channels: int, num_classes: int, init: str = "default"):
        super().__init__()
        self.spec = spec
        self.before = nn.Sequential(*before)
        self.stages = stages
        self.after = nn.Sequential(*after)
        mode = spec.pooling
        self.global_pool = build_pooling(mode) if spec.global_feature else None
        self.stripe_pool = build_pooling("avg" if mode == "gem" else mode, spec.stripes) if spec.stripes else None
        n_heads = int(spec.global_feature) + spec.stripes
        kwargs: dict[str, Any] = {}
        if spec.head == "reduction":
            kwargs = {"dim": spec.head_dim, "dropout": spec.dropout, "triplet_input": spec.triplet_input}
        elif spec.head == "conv_reduction":
            kwargs = {"dim": spec.head_dim, "neck_feat": spec.neck_feat}
        elif spec.head == "bnneck":
            kwargs = {"neck_feat": spec.neck_feat}
        self.heads = nn.ModuleList(build_head(spec.head, channels, num_classes, init=init, **kwargs)
                                   for _ in range(n_heads))
        self.head_names = ([spec.name] if spec.global_feature else []) + [
            f"{spec.name}.p{k + 1}" for k in range(spec.stripes)]
        self.triplet_flags = ([spec.triplet] if spec.global_feature else []) + [spec.stripe_triplet] * spec.stripes

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk map [B, C, h, w] -> the branch's map after its stages and attention."""
        return self.after(self.stages(self.before(x)))

    def forward(self, x: torch.Tensor) -> list[HeadOutput]:
        fmap = self.feature_map(x)
        pooled = [self.global_pool(fmap)] if self.global_pool is not None else []
        if self.stripe_pool is not None:
            pooled += self.stripe_pool(fmap)
        return [head(v) for head, v in zip(self.heads, pooled)]


@MODELS.register("multibranch")
class MultiBranchNet(nn.Module):
    """Shared trunk + N branches (see the module docstring); ``branches`` is a list of
    :class:`BranchSpec` dicts; ``share_layer4`` makes all branches share one copy of the stages
    after the trunk (the MBA code's behaviour). ``input_size`` [H, W]: the input size the
    size-dependent layers (SAM-RPE) are built for; null takes ``input.size`` (via build_model).
    ``init``: the heads' init scheme (default | mgn | bdb | lagnet, :mod:`reid.models.heads.init`)."""

    def __init__(self, num_classes: int,
                 backbone: dict = {"name": "resnet50", "last_stride": 1},  # noqa: B006
                 trunk: str = "layer3",
                 branches: list = [{"name": "global"}],  # noqa: B006
                 share_layer4: bool = False, input_size: list | None = None, init: str = "default"):
        super().__init__()
        init_scheme(init, "model.init")
        specs = [BranchSpec.parse(b, i) for i, b in enumerate(branches)]
        if not specs:
            raise ConfigError("model.branches must list at least one branch")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"model.branches: branch names must be unique, got {names}")
        net = build_backbone(backbone)
        stage_idx, block = parse_trunk(trunk)
        parts: list[nn.Module] = [net.stage("stem")] + [net.stage(s) for s in STAGES[:stage_idx - 1]]
        last = net.stage(STAGES[stage_idx - 1])
        rest: list[nn.Module] = []
        if block is None:
            parts.append(last)
        else:
            if not isinstance(last, nn.Sequential) or not 0 <= block < len(last) - 1:
                raise ConfigError(f"model.trunk '{trunk}': block index out of range for this backbone")
            parts.append(last[: block + 1])
            rest.append(last[block + 1:])
        rest += [net.stage(s) for s in STAGES[stage_idx:]]
        self.trunk = nn.Sequential(*parts)
        self.share_layer4 = share_layer4
        if input_size is not None and (len(input_size) != 2 or not all(isinstance(v, int) and v > 0
                                                                       for v in input_size)):
            raise ConfigError(f"model.input_size must be [height, width] or null, got {input_size}")
        self.input_size = (int(input_size[0]), int(input_size[1])) if input_size is not None else None
        strides = {s.stride for s in specs}
        if share_layer4 and len(strides) > 1:
            raise ConfigError(f"model.share_layer4 needs one stride for all branches, got {sorted(strides, key=str)}")

        was_training = net.training
        probe = torch.zeros(1, 3, *(self.input_size or PROBE_SIZE))
        self.trunk.eval()
        with torch.no_grad():
            trunk_map = self.trunk(probe)
        # branch 0 takes the backbone's own modules, the others deep copies (taken before any
        # stride is changed); with share_layer4 every branch uses the same object
        n_copies = 1 if share_layer4 else len(specs)
        copies = [rest] + [copy.deepcopy(rest) for _ in range(n_copies - 1)]
        stage_sets = []
        for i, spec in enumerate(specs[:n_copies]):
            if spec.stride is not None and rest and stage_idx < 4:
                set_stage_stride(copies[i][-1], spec.stride)
            stage_sets.append(nn.Sequential(*copies[i]))
        built = []
        for i, spec in enumerate(specs):
            stages = stage_sets[0 if share_layer4 else i]
            stages.eval()
            with torch.no_grad():
                out_map = stages(trunk_map)
            where = f"model.branches[{i}]"
            before = [build_layer(a, trunk_map.shape, self.input_size is not None, f"{where}.before[{j}]")
                      for j, a in enumerate(spec.before)]
            after = [build_layer(a, out_map.shape, self.input_size is not None, f"{where}.after[{j}]")
                     for j, a in enumerate(spec.after)]
            built.append(Branch(spec, stages, before, after, int(out_map.shape[1]), num_classes, init))
        self.branches = nn.ModuleList(built)
        self.train(was_training)
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


def laganet_branches(use_cam: bool = True, use_sam: bool = True, use_local: bool = True,
                     cam_variant: str = "softmax", position: str = "relative", stripes: int = 3,
                     embedding_dim: int = 1024, dropout: float = 0.5, pooling: str = "avg",
                     triplet_input: str = "embedding") -> list[dict]:
    """LAGA-Net's branch list: [spatial (S3, layer4, S4), channel (C3, layer4, C4), global, local]."""
    head = {"head": "reduction", "head_dim": embedding_dim, "dropout": dropout, "pooling": pooling,
            "triplet_input": triplet_input}
    sam = {"name": "sam_rpe", "position": position}
    cam = {"name": "cam", "variant": cam_variant}
    branches = []
    if use_sam:
        branches.append({"name": "spatial", "before": [dict(sam)], "after": [dict(sam)], **head})
    if use_cam:
        branches.append({"name": "channel", "before": [dict(cam)], "after": [dict(cam)], **head})
    branches.append({"name": "global", **head})
    if use_local:
        branches.append({"name": "local", "global_feature": False, "stripes": stripes, **head})
    return branches


@MODELS.register("laganet")
def laganet(num_classes: int,
            backbone: dict = {"name": "resnet50", "last_stride": 1},  # noqa: B006
            use_cam: bool = True, use_sam: bool = True, use_local: bool = True,
            cam_variant: str = "softmax", position: str = "relative", share_layer4: bool = False,
            stripes: int = 3, embedding_dim: int = 1024, dropout: float = 0.5, pooling: str = "avg",
            input_size: list | None = None, triplet_input: str = "embedding") -> MultiBranchNet:
    """LAGA-Net (models.md): ResNet trunk to layer3, four branches each with its own layer4 (last
    stride 1): spatial S3 -> layer4 -> S4 -> GAP, channel C3 -> layer4 -> C4 -> GAP, global
    layer4 -> GAP, local layer4 -> ``stripes`` stripes; a reduction head (Linear -> BN ->
    LeakyReLU(0.1) -> Dropout) and classifier per feature (6). Eval feature: concat
    [s, c, g, p1, p2, p3] before reduction (6 x 2048 = 12,288-D). ``use_sam``/``use_cam``/
    ``use_local`` drop branches for the Table III ladder (Global; +Local; +CAM; +SAM-RPE).
    ``triplet_input``: the triplets see the 1024-D embeddings before the dropout (``embedding``, the
    paper's "learned embeddings") or after it (``dropout``); the classifiers always see the latter."""
    branches = laganet_branches(use_cam, use_sam, use_local, cam_variant, position, stripes, embedding_dim,
                                dropout, pooling, triplet_input)
    return MultiBranchNet(num_classes, backbone=backbone, trunk="layer3", branches=branches,
                          share_layer4=share_layer4, input_size=input_size)
