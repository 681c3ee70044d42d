"""Spatial attention and class-activation maps of a network, as tensors (no drawing here).

:func:`collect_maps` runs one forward pass with forward hooks on the attention layers and returns one
:class:`MapColumn` per map kind, each ``[B, h, w]`` at the layer's own resolution:

* SAM-RPE (LAGA-Net): the content attention ``softmax_j(q_i . k_j)`` of the chosen query positions i
  (fractions of the image height and width) and its mean over all query positions;
* RGA-S (RGA-Net): the sigmoid weight per position;
* MMGA: the sigmoid maps S of both modules (whole; whole, upper, lower);
* LAS (LAG-Net): the top-k attention maps (largest spatial sum);
* BA-DropBlock (LAG-Net, training only): the region the layer drops for a seeded draw, from the
  LAS maps of this (eval-mode) pass; BDB's band likewise;
* Grad-CAM (any network, :func:`grad_cam`).

Layers without a spatial map (CAM, RGA-C) are named in ``notes``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reid.models.backbones.mobilenetv2 import InvertedResidual
from reid.models.backbones.resnet import BasicBlock, Bottleneck
from reid.models.layers import CAM, LAS, RGA, SAMRPE, BADropBlock, BatchDropBlock, MaskGuidedAttention

#: Residual blocks whose outputs Grad-CAM may use (the last ones on each path to the output).
BLOCKS = (Bottleneck, BasicBlock, InvertedResidual)
#: Default SAM-RPE query positions (row, column) as fractions of the image: head, torso, legs.
DEFAULT_QUERIES = ((0.15, 0.5), (0.45, 0.5), (0.8, 0.5))
MMGA_PARTS = ("whole", "upper", "lower")
CAM_TARGETS = ("class", "norm")


@dataclasses.dataclass
class MapColumn:
    """One labelled map per image: ``maps`` [B, h, w] (float); ``kind``: heat (attention, CAM),
    region (1 = dropped) or mask (ground truth); ``point``: a query position (row, col) in [0, 1]."""

    label: str
    maps: torch.Tensor
    kind: str = "heat"
    point: tuple[float, float] | None = None


@dataclasses.dataclass
class MapSet:
    columns: list[MapColumn]
    notes: list[str]


def query_index(position: Sequence[float], height: int, width: int) -> int:
    """Row-major index of the map cell holding the point (row, col) given as fractions in [0, 1]."""
    r = min(height - 1, max(0, int(float(position[0]) * height)))
    c = min(width - 1, max(0, int(float(position[1]) * width)))
    return r * width + c


def sam_attention(module: SAMRPE, x: torch.Tensor) -> torch.Tensor:
    """SAM-RPE's content attention [B, N(query), N(key)] for its input x [B, C, H, W] (rows sum to 1)."""
    q, k = module.query(x).flatten(2), module.key(x).flatten(2)
    return torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)


def rga_spatial(module: RGA, x: torch.Tensor) -> torch.Tensor | None:
    """RGA-S weights [B, H, W] for the input x, or None for an RGA-C module."""
    return module.spatial_attention(x)[:, 0] if module.spatial is not None else None


def dropped_region(drop: BADropBlock, attention: torch.Tensor, size: Sequence[int],
                   generator: torch.Generator) -> torch.Tensor:
    """[B, H, W]: 1 where BA-DropBlock would zero F for the draw of ``generator`` from ``attention``."""
    _, chosen = drop.sample_maps(attention, generator)
    return 1.0 - drop.drop_mask(chosen, tuple(int(s) for s in size))[:, 0]


def short_name(model: nn.Module, name: str) -> str:
    """A readable place for a module path: ``branches.0.before.0`` -> ``spatial before``."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[0] == "branches" and hasattr(model, "branches"):
        branch = model.branches[int(parts[1])]
        where = parts[2] if parts[2] in ("before", "after") else ".".join(parts[2:])
        return f"{getattr(getattr(branch, 'spec', None), 'name', parts[1])} {where}"
    if len(parts) == 2 and parts[0] == "rga":
        return parts[1]
    return name


def _layers(model: nn.Module, kind: type | tuple[type, ...]) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kind)]


def _parent(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


@torch.no_grad()
def collect_maps(model: nn.Module, x: torch.Tensor,
                 query_positions: Sequence[Sequence[float]] = DEFAULT_QUERIES, las_top: int = 3,
                 seed: int = 0) -> MapSet:
    """Every spatial attention of ``model`` (eval mode) for the input batch x [B, 3, H, W]."""
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, Any] = {}
    hooks = []
    watched = (SAMRPE, RGA, LAS, MaskGuidedAttention, BatchDropBlock)
    for name, module in _layers(model, watched):
        def hook(_m, args, out, name=name):
            inputs[name], outputs[name] = args[0], out
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    columns: list[MapColumn] = []
    notes: list[str] = []
    for name, module in _layers(model, SAMRPE):
        if name not in inputs:
            continue
        attn = sam_attention(module, inputs[name])
        h, w = inputs[name].shape[2:]
        place = short_name(model, name)
        for pos in query_positions:
            i = query_index(pos, h, w)
            columns.append(MapColumn(f"SAM-RPE {place}\nquery ({pos[0]:.2f}, {pos[1]:.2f})",
                                     attn[:, i].reshape(-1, h, w), point=(float(pos[0]), float(pos[1]))))
        columns.append(MapColumn(f"SAM-RPE {place}\nmean over queries", attn.mean(dim=1).reshape(-1, h, w)))
    for name, module in _layers(model, RGA):
        if name not in inputs:
            continue
        spatial = rga_spatial(module, inputs[name])
        if spatial is not None:
            columns.append(MapColumn(f"RGA-S {short_name(model, name)}", spatial))
    if any(m.channel is not None for _, m in _layers(model, RGA)):
        notes.append("RGA-C weights channels: no spatial map")
    for name, _module in _layers(model, MaskGuidedAttention):
        if name not in outputs:
            continue
        maps = outputs[name].maps
        labels = ["whole"] if maps.shape[1] == 1 else list(MMGA_PARTS[:maps.shape[1]])
        for m, part in enumerate(labels):
            columns.append(MapColumn(f"MMGA {name} {part}", maps[:, m]))
    las_outputs = {n: outputs[n] for n, _ in _layers(model, LAS) if n in outputs}
    for name, out in las_outputs.items():
        place = "" if len(las_outputs) == 1 else f" {name}"
        for k in range(min(las_top, out.attention.shape[1])):
            columns.append(MapColumn(f"LAS{place} top-{k + 1} map", out.attention[:, k]))
    for name, module in _layers(model, BADropBlock):
        source = next((out for n, out in las_outputs.items() if _parent(n) == _parent(name)), None)
        if source is None:
            notes.append(f"BA-DropBlock {name}: no LAS maps found beside it")
            continue
        gen = torch.Generator(device="cpu").manual_seed(seed)
        region = dropped_region(module, source.attention.cpu(), source.attention.shape[2:], gen)
        columns.append(MapColumn(f"BA-DropBlock dropped\n(seed {seed}, training only)", region, kind="region"))
    for name, module in _layers(model, BatchDropBlock):
        if name not in inputs:
            continue
        h, w = inputs[name].shape[2:]
        band = 1.0 - module.band_mask(h, w, torch.Generator().manual_seed(seed))
        columns.append(MapColumn(f"BDB dropped band\n(seed {seed}, training only)",
                                 band.expand(x.shape[0], h, w), kind="region"))
    if _layers(model, CAM):
        notes.append("CAM (channel attention) weights channels: no spatial map")
    return MapSet(columns, notes)


def _logit_mode(model: nn.Module) -> None:
    """Training mode (heads return logits) with BatchNorm, dropout and drop layers in eval mode."""
    model.train()
    for m in model.modules():
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout, BADropBlock, BatchDropBlock)):
            m.eval()


def cam_score(model: nn.Module, x: torch.Tensor, target: str) -> tuple[torch.Tensor, str]:
    """The scalar Grad-CAM differentiates and its description.

    ``class``: the sum over images of the summed logits of every identity classifier at each image's
    top class (BatchNorm and dropout in eval mode); ``norm``: the sum of the eval features' L2 norms.
    """
    if target not in CAM_TARGETS:
        raise ValueError(f"Grad-CAM target must be one of {CAM_TARGETS}, got '{target}'")
    if target == "class":
        _logit_mode(model)
        logits = model(x).get("logits")
        if logits is not None:
            logits = sum(logits) if isinstance(logits, (list, tuple)) else logits
            top = logits.detach().argmax(dim=1)
            return logits.gather(1, top[:, None]).sum(), "top identity class"
    model.eval()
    feats = model(x)["features"]
    return feats.flatten(1).norm(dim=1).sum(), "feature norm"


def grad_cam(model: nn.Module, x: torch.Tensor, target: str = "class") -> tuple[torch.Tensor, str]:
    """Grad-CAM [B, H, W] at the input size (unnormalised, >= 0) and the target used.

    The maps are taken at the last residual blocks of every path to the output (e.g. layer4 of each
    LAGA-Net branch): blocks whose output feeds no later block. Per block
    ``relu(sum_c mean_hw(dS/dA_c) A_c)``, upsampled bilinearly and summed over those blocks.
    """
    seen: list[dict[str, Any]] = []
    hooks = []
    for _, module in _layers(model, BLOCKS):
        def hook(_m, args, out):
            if out.requires_grad:
                out.retain_grad()
            seen.append({"in": args[0].grad_fn, "out": out})
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        with torch.enable_grad():
            score, what = cam_score(model, x, target)
            feeds = _upstream_blocks(seen)
            last = [s["out"] for i, s in enumerate(seen) if i not in feeds and s["out"].requires_grad]
            if not last:
                raise RuntimeError("Grad-CAM: the network has no residual blocks whose output needs a gradient")
            score.backward()
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    cam = torch.zeros(x.shape[0], *x.shape[2:])
    for a in last:
        weights = a.grad.mean(dim=(2, 3), keepdim=True)
        m = F.relu((weights * a.detach()).sum(dim=1, keepdim=True))
        cam += F.interpolate(m, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0].cpu()
    return cam, what


def _upstream_blocks(seen: list[dict[str, Any]]) -> set[int]:
    """Indices of the recorded blocks whose output reaches the input of another recorded block
    (walking the autograd graph back from each block input, stopping at block outputs)."""
    out_nodes = {s["out"].grad_fn: i for i, s in enumerate(seen) if s["out"].grad_fn is not None}
    upstream: set[int] = set()
    for s in seen:
        stack, visited = [s["in"]], set()
        while stack:
            node = stack.pop()
            if node is None or node in visited:
                continue
            visited.add(node)
            if node in out_nodes:
                upstream.add(out_nodes[node])
                continue
            stack.extend(n for n, _ in node.next_functions)
    return upstream


def read_masks(image_paths: Sequence[str], size: Sequence[int], mask_dir: str | None = None
               ) -> tuple[torch.Tensor, list[bool]]:
    """Ground-truth body-part masks [B, 3, H, W] (whole, upper, lower; LIP label maps grouped as
    the ``mask_guidance`` loss does) and which images have one. A mask is ``mask_dir/<stem>.png``,
    else the Market layout's ``<root>/masks/<split>/<stem>.png`` beside ``<root>/<split>/<image>``."""
    import numpy as np
    from PIL import Image

    from reid.losses.mask import group_labels

    out = torch.zeros(len(image_paths), 3, int(size[0]), int(size[1]))
    found = []
    for i, p in enumerate(image_paths):
        p = Path(p)
        candidates = ([Path(mask_dir) / f"{p.stem}.png"] if mask_dir else []) + [
            p.parent.parent / "masks" / p.parent.name / f"{p.stem}.png"]
        path = next((c for c in candidates if c.is_file()), None)
        found.append(path is not None)
        if path is None:
            continue
        with Image.open(path) as im:
            im = im if im.mode in ("L", "P") else im.convert("L")
            labels = np.asarray(im.resize((int(size[1]), int(size[0])), Image.NEAREST), dtype=np.int64)
        out[i] = group_labels(torch.from_numpy(labels)[None])[0]
    return out, found


def figure_columns(model: nn.Module, x: torch.Tensor,
                   query_positions: Sequence[Sequence[float]] = DEFAULT_QUERIES, las_top: int = 3,
                   seed: int = 0, cam_target: str = "class",
                   masks: tuple[torch.Tensor, list[bool]] | None = None) -> MapSet:
    """:func:`collect_maps`, the ground-truth masks after the MMGA maps (when ``masks`` holds any)
    and a Grad-CAM column last: every column of ``tools/visualize.py attention``."""
    found = collect_maps(model, x, query_positions, las_top, seed)
    columns = list(found.columns)
    notes = list(found.notes)
    mmga = [i for i, c in enumerate(columns) if c.label.startswith("MMGA")]
    if mmga and masks is not None and any(masks[1]):
        gt = [MapColumn(f"mask {part}\n(ground truth)", masks[0][:, m], kind="mask")
              for m, part in enumerate(MMGA_PARTS)]
        columns[mmga[-1] + 1:mmga[-1] + 1] = gt
        if not all(masks[1]):
            notes.append(f"{masks[1].count(False)} image(s) have no ground-truth mask (shown empty)")
    elif mmga:
        notes.append("no ground-truth masks found (<root>/masks/<split>/<stem>.png or --masks DIR)")
    cam, what = grad_cam(model, x, cam_target)
    columns.append(MapColumn(f"Grad-CAM\n({what})", cam))
    return MapSet(columns, notes)
