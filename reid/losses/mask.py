"""MMGA's mask guidance loss (models.md "MMGA"): sigmoid attention maps vs body-part masks.

Maps: output ``attention_maps``, a list of [B, M, h, w] (or one tensor), channel m paired with mask
channel m (0 whole, 1 upper, 2 lower). Masks: ``batch["masks"]``, either [B, 3, H, W] binary
channels (float or uint8, {0, 1} or {0, 255}) or human-parsing label maps [B, H, W] / [B, 1, H, W]
(integer), grouped as whole = label > 0, upper = ``upper_labels``, lower = ``lower_labels`` (LIP
numbering by default). ``batch["mask_valid"]`` [B] bool marks samples that have a mask (absent:
all valid); with ``empty_is_missing`` a mask without any foreground (e.g. the zero-filled stand-in
the training store holds for a missing file) counts as missing too. The loss is the mean over the
samples with a mask; a sample without one contributes nothing (value nor gradient), and a batch
without any gives exactly 0::

    loss = 1/max(1, V) sum_b valid_b sum_maps sum_m sqrt(mean_{h,w} (S_bm - area_resize(mask_bm))^2 + eps),
    V = sum_b valid_b

The config ``weight`` is lambda (1). ``last_missing`` counts the last batch's samples without a mask,
``missing`` those since it was last set to 0 (the trainer does at each epoch start, and logs it).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reid.checks import Labels, Positive
from reid.losses.base import full_precision
from reid.registry import LOSSES

#: LIP labels: 1 hat, 2 hair, 3 glove, 4 sunglasses, 5 upper-clothes, 6 dress, 7 coat, 8 socks,
#: 9 pants, 10 jumpsuit, 11 scarf, 12 skirt, 13 face, 14/15 left/right arm, 16/17 legs, 18/19 shoes.
LIP_UPPER = [1, 2, 3, 4, 5, 6, 7, 11, 13, 14, 15]
LIP_LOWER = [8, 9, 10, 12, 16, 17, 18, 19]


def group_labels(labels: torch.Tensor, upper: Sequence[int] = LIP_UPPER,
                 lower: Sequence[int] = LIP_LOWER) -> torch.Tensor:
    """Label maps [B, H, W] (int) -> binary masks [B, 3, H, W] float: whole (> 0), upper, lower."""
    labels = labels.long()
    up = torch.isin(labels, torch.as_tensor(list(upper), dtype=torch.long, device=labels.device))
    low = torch.isin(labels, torch.as_tensor(list(lower), dtype=torch.long, device=labels.device))
    return torch.stack([labels > 0, up, low], dim=1).float()


def masks_from_batch(masks: torch.Tensor, upper: Sequence[int] = LIP_UPPER,
                     lower: Sequence[int] = LIP_LOWER) -> torch.Tensor:
    """``batch["masks"]`` in any accepted form -> float [B, K, H, W] in [0, 1]."""
    if masks.dim() == 4 and masks.shape[1] == 1 and not masks.is_floating_point():
        masks = masks[:, 0]
    if masks.dim() == 3:
        return group_labels(masks, upper, lower)
    if masks.dim() != 4:
        raise ValueError(f"mask_guidance: masks must be [B, 3, H, W] or label maps [B, H, W], got {list(masks.shape)}")
    masks = masks.float()
    if masks.numel() and masks.max() > 1:
        masks = masks / 255.0
    return masks


def area_resize(masks: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """[B, K, H, W] -> [B, K, h, w], each output pixel the mean of the input area it covers."""
    return masks if tuple(masks.shape[2:]) == tuple(size) else F.interpolate(masks, size=tuple(size), mode="area")


@LOSSES.register("mask_guidance")
class MaskGuidanceLoss(nn.Module):
    """Sum of per-map RMSEs between attention maps and area-resized masks (module docstring).

    ``require_masks``: a batch without ``masks`` is an error (true) or gives 0 (false); the training
    data build (reid.data.build.check_masks) also makes a training set without any mask an error;
    ``empty_is_missing``: an all-background mask counts as missing.
    """

    def __init__(self, input: str = "attention_maps", masks: str = "masks",  # noqa: A002
                 valid: str = "mask_valid", upper_labels: Labels = LIP_UPPER,  # noqa: B006
                 lower_labels: Labels = LIP_LOWER, require_masks: bool = True,  # noqa: B006
                 empty_is_missing: bool = True, eps: Positive = 1e-12):
        super().__init__()
        self.input, self.masks, self.valid = input, masks, valid
        self.upper, self.lower = list(upper_labels), list(lower_labels)
        self.require_masks, self.empty_is_missing, self.eps = require_masks, empty_is_missing, float(eps)
        self.missing = 0  # samples without a mask since the trainer's last reset (epoch start)
        self.last_missing = 0

    def forward(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> torch.Tensor:
        if self.input not in outputs:
            raise KeyError(f"mask_guidance: the model gives no output '{self.input}' (outputs: {', '.join(outputs)})")
        maps = outputs[self.input]
        maps = list(maps) if isinstance(maps, (list, tuple)) else [maps]
        if self.masks not in batch:
            if self.require_masks:
                raise KeyError(
                    f"mask_guidance: the batch has no '{self.masks}' (keys: {', '.join(batch)}): the data set "
                    "gives no body-part masks; provide them (a mask root mirroring the image paths) or set "
                    "require_masks: false on this loss to train without mask guidance"
                )
            self.last_missing = int(maps[0].shape[0])
            self.missing += self.last_missing
            return sum(m.sum() for m in maps) * 0.0
        masks = masks_from_batch(batch[self.masks].to(maps[0].device), self.upper, self.lower)
        b = masks.shape[0]
        valid = batch.get(self.valid)
        valid = (torch.ones(b, dtype=torch.bool, device=masks.device) if valid is None
                 else torch.as_tensor(valid, device=masks.device).bool().reshape(b))
        if self.empty_is_missing:
            valid = valid & (masks.flatten(1).amax(dim=1) > 0)
        self.last_missing = int((~valid).sum())
        self.missing += self.last_missing
        per_sample = torch.zeros(b, device=masks.device)
        for s in maps:
            k = s.shape[1]
            if k > masks.shape[1]:
                raise ValueError(f"mask_guidance: a map has {k} channels but the masks only {masks.shape[1]}")
            target = area_resize(masks[:, :k], s.shape[2:])
            rmse = torch.sqrt(((full_precision(s) - target) ** 2).mean(dim=(2, 3)) + self.eps)  # [B, k]
            per_sample = per_sample + rmse.sum(dim=1)
        kept = torch.where(valid, per_sample, torch.zeros_like(per_sample))  # no gradient to the others
        return kept.sum() / valid.sum().clamp(min=1)
