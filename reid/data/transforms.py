"""Batched training augmentation on the training device, in one pass per batch.

uint8 [B, H, W, 3] -> float32 [B, 3, H, W]: one ``affine_grid``/``grid_sample`` for the geometry
(random crop after a ``crop_scale`` upscale, or pad-and-crop, and horizontal flip), colour jitter
(brightness, contrast, saturation, hue: a YIQ chroma rotation), normalisation, then random erasing. Every sample has its
own random parameters, drawn from a CPU ``torch.Generator`` (so results do not depend on the device)
and applied with broadcast tensor ops: no Python loop over samples. Masks [B, H, W] follow the
geometry (nearest sampling) and nothing else.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

CROPS = ("upscale", "pad", "none")
FILLS = ("mean", "random", "zero")


def _as_tensor(images: Any, device: torch.device | str | None) -> torch.Tensor:
    if isinstance(images, np.ndarray):  # a read-only memory map is copied (torch needs writable)
        images = torch.from_numpy(np.array(images) if not images.flags.writeable else np.ascontiguousarray(images))
    return images.to(device, non_blocking=True) if device is not None else images


def to_input(images: Any, mean: Sequence[float], std: Sequence[float],
             device: torch.device | str | None = None) -> torch.Tensor:
    """Test-time input: uint8 [B, H, W, 3] (array or tensor) -> normalised float32 [B, 3, H, W]."""
    x = _as_tensor(images, device)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device) * 255.0
    s = torch.tensor(std, dtype=torch.float32, device=x.device) * 255.0
    return ((x.float() - m) / s).permute(0, 3, 1, 2).contiguous()


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma [B, 1, H, W] of RGB [B, 3, H, W] in [0, 1] (ITU-R 601)."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _rotate_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift`` [B] (fraction of a turn) per sample, as a rotation of the chroma
    plane in YIQ space (one 3x3 matrix per sample; close to an HSV hue shift, much cheaper)."""
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                       dtype=x.dtype, device=x.device)
    angle = -2 * math.pi * shift.to(device=x.device, dtype=x.dtype)  # sign: red -> green for +1/3
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(len(shift), 3, 3, dtype=x.dtype, device=x.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    mat = torch.linalg.inv(yiq) @ rot @ yiq  # [B, 3, 3]
    return torch.einsum("bij,bjhw->bihw", mat, x).clamp_(0, 1)


class BatchAugment:
    """Training augmentation for uint8 [B, H, W, 3] batches (see the module docstring).

    Options mirror ``cfg.augment``: ``crop`` (upscale | pad | none), ``crop_scale``, ``crop_prob``,
    ``pad``, ``flip_prob``, ``color_jitter`` {prob, brightness, contrast, saturation, hue},
    ``erasing`` {prob, area: [lo, hi], aspect, fill: mean | random | zero}.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], crop: str = "upscale",
                 crop_scale: float = 1.125, crop_prob: float = 1.0, pad: int = 10, flip_prob: float = 0.5,
                 color_jitter: dict | None = None, erasing: dict | None = None):
        if crop not in CROPS:
            raise ValueError(f"augment.crop must be one of {CROPS}, got {crop!r}")
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]
        self.crop, self.crop_scale, self.crop_prob = crop, float(crop_scale), float(crop_prob)
        self.pad, self.flip_prob = int(pad), float(flip_prob)
        cj = dict(color_jitter or {})
        self.cj_prob = float(cj.get("prob", 0.0))
        self.brightness, self.contrast = float(cj.get("brightness", 0.0)), float(cj.get("contrast", 0.0))
        self.saturation, self.hue = float(cj.get("saturation", 0.0)), float(cj.get("hue", 0.0))
        er = dict(erasing or {})
        self.erase_prob = float(er.get("prob", 0.0))
        self.erase_area = tuple(float(a) for a in er.get("area", (0.02, 0.4)))
        self.erase_aspect = float(er.get("aspect", 0.3))
        self.erase_fill = str(er.get("fill", "mean"))
        if self.erase_fill not in FILLS:
            raise ValueError(f"augment.erasing.fill must be one of {FILLS}, got {self.erase_fill!r}")

    @classmethod
    def from_config(cls, cfg: Any) -> BatchAugment:
        a = cfg.augment
        return cls(cfg.input.pixel_mean, cfg.input.pixel_std, crop=a.crop, crop_scale=a.crop_scale,
                   crop_prob=a.crop_prob, pad=a.pad, flip_prob=a.flip_prob, color_jitter=a.color_jitter,
                   erasing=a.erasing)

    # ----------------------------------------------------------------------------- parameters

    def affine(self, b: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
        """Per-sample affine matrices [B, 2, 3] mapping output to input normalised coordinates."""
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = 1.0
        theta[:, 1, 1] = 1.0
        crop_on = torch.rand(b, generator=gen) < self.crop_prob
        if self.crop == "upscale":
            s = self.crop_scale
            oy = torch.rand(b, generator=gen) * (s - 1) * h  # offset in upscaled pixels
            ox = torch.rand(b, generator=gen) * (s - 1) * w
            scale = torch.where(crop_on, torch.full((b,), 1 / s), torch.ones(b))
            theta[:, 0, 0] = scale
            theta[:, 1, 1] = scale
            theta[:, 0, 2] = torch.where(crop_on, 1 / s - 1 + 2 * ox / (s * w), torch.zeros(b))
            theta[:, 1, 2] = torch.where(crop_on, 1 / s - 1 + 2 * oy / (s * h), torch.zeros(b))
        elif self.crop == "pad":
            oy = torch.randint(0, 2 * self.pad + 1, (b,), generator=gen).float() - self.pad
            ox = torch.randint(0, 2 * self.pad + 1, (b,), generator=gen).float() - self.pad
            theta[:, 0, 2] = torch.where(crop_on, 2 * ox / w, torch.zeros(b))
            theta[:, 1, 2] = torch.where(crop_on, 2 * oy / h, torch.zeros(b))
        flip = torch.rand(b, generator=gen) < self.flip_prob
        theta[:, 0, 0] = torch.where(flip, -theta[:, 0, 0], theta[:, 0, 0])
        return theta

    def erase_boxes(self, b: int, h: int, w: int, gen: torch.Generator, tries: int = 10) -> torch.Tensor:
        """Per-sample rectangles [B, 4] (y0, x0, eh, ew); eh = 0 where nothing is erased.

        Like RandomErasing: area fraction in ``area``, log-uniform aspect in [aspect, 1/aspect], up
        to ``tries`` draws per sample, the first that fits is used.
        """
        lo, hi = self.erase_area
        area = (lo + (hi - lo) * torch.rand(b, tries, generator=gen)) * h * w
        la = math.log(self.erase_aspect)
        ratio = torch.exp(la + (-2 * la) * torch.rand(b, tries, generator=gen))
        eh = torch.sqrt(area * ratio).round()
        ew = torch.sqrt(area / ratio).round()
        fits = (eh < h) & (ew < w) & (eh > 0) & (ew > 0)
        first = torch.where(fits.any(1), fits.float().argmax(1), torch.zeros(b, dtype=torch.long))
        eh = eh.gather(1, first[:, None]).squeeze(1)
        ew = ew.gather(1, first[:, None]).squeeze(1)
        on = (torch.rand(b, generator=gen) < self.erase_prob) & fits.any(1)
        eh, ew = torch.where(on, eh, torch.zeros(b)), torch.where(on, ew, torch.zeros(b))
        y0 = torch.floor(torch.rand(b, generator=gen) * (h - eh + 1))
        x0 = torch.floor(torch.rand(b, generator=gen) * (w - ew + 1))
        return torch.stack([y0, x0, eh, ew], dim=1)

    # ---------------------------------------------------------------------------------- apply

    def __call__(self, images: Any, gen: torch.Generator, masks: Any = None,
                 device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 [B, H, W, 3] (+ masks [B, H, W]) -> (float32 [B, 3, H, W], uint8 masks or None)."""
        x = _as_tensor(images, device)
        dev = x.device
        b, h, w = x.shape[:3]
        x = x.float().div_(255.0).permute(0, 3, 1, 2)  # a channels-last view of [B, 3, H, W]
        m = _as_tensor(masks, dev) if masks is not None else None

        theta = self.affine(b, h, w, gen)
        geometric = (self.crop != "none" and self.crop_prob > 0) or self.flip_prob > 0
        if geometric:
            grid = F.affine_grid(theta.to(dev), [b, 3, h, w], align_corners=False)
            padding = "zeros" if self.crop == "pad" else "border"
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
            if m is not None:
                m = F.grid_sample(m[:, None].float(), grid, mode="nearest", padding_mode="zeros",
                                  align_corners=False)[:, 0].round().to(torch.uint8)

        if self.cj_prob > 0 and (self.brightness or self.contrast or self.saturation or self.hue):
            on = (torch.rand(b, generator=gen) < self.cj_prob).float()

            def factor(amount: float) -> torch.Tensor:
                f = _uniform(gen, b, max(0.0, 1 - amount), 1 + amount)
                return (1 + on * (f - 1)).to(dev).view(b, 1, 1, 1)

            fb, fc, fs = factor(self.brightness), factor(self.contrast), factor(self.saturation)
            fh = (on * _uniform(gen, b, -self.hue, self.hue)).to(dev)
            if self.brightness:
                x = (x * fb).clamp_(0, 1)
            if self.contrast:
                mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
                x = (mean + fc * (x - mean)).clamp_(0, 1)
            if self.saturation:
                g = _gray(x)
                x = (g + fs * (x - g)).clamp_(0, 1)
            if self.hue:
                x = _rotate_hue(x, fh)

        mean_t = torch.tensor(self.mean, device=dev).view(1, 3, 1, 1)
        std_t = torch.tensor(self.std, device=dev).view(1, 3, 1, 1)
        x = (x - mean_t) / std_t

        if self.erase_prob > 0:
            box = self.erase_boxes(b, h, w, gen).to(dev)
            ys = torch.arange(h, device=dev).view(1, h, 1)
            xs = torch.arange(w, device=dev).view(1, 1, w)
            y0, x0, eh, ew = (box[:, i].view(b, 1, 1) for i in range(4))
            region = ((ys >= y0) & (ys < y0 + eh) & (xs >= x0) & (xs < x0 + ew)).unsqueeze(1)
            if self.erase_fill == "mean":
                fill = torch.zeros((), device=dev)
            elif self.erase_fill == "zero":
                fill = (-mean_t / std_t)
            else:
                fill = torch.randn(b, 3, h, w, generator=gen).to(dev)
            x = torch.where(region, fill, x)
        return x.contiguous(), m
