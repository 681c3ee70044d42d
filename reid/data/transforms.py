"""Batched training augmentation on the training device, in a few passes per batch.

uint8 [B, Hs, Ws, 3] (the store, at :meth:`BatchAugment.stored_size`) -> float32 [B, 3, H, W]:

1. Geometry as one integer gather on uint8: a random crop (from the store's ``crop_scale`` upscale,
   which equals resizing each image and cropping it; or pad-and-crop with a black border) and a
   horizontal flip are per-sample row and column indices.
2. Colour jitter (brightness, contrast, saturation, hue as a YIQ chroma rotation) and normalisation
   composed into one per-sample 3x3 colour matrix and offset: one batched matrix product, one clamp.
   Like torchvision, contrast blends with the grey mean; the value is clamped to [0, 1] once, after
   the four operations, where torchvision clamps after each (they differ only for pixels that leave
   [0, 1] in an intermediate step and come back).
3. Random erasing (Zhong et al.'s RandomErasing, as the released re-id codes run it after
   normalisation): every sample draws its candidate boxes at once and keeps the first that fits; the
   box is applied as one in-place multiplication by the kept-pixel mask (plus the fill value).

Every sample has its own random parameters, drawn from a CPU ``torch.Generator`` (so results do not
depend on the device) and applied with broadcast tensor ops: no Python loop over samples. Masks
[B, Hs, Ws] follow the geometry (the same gather) and nothing else.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from reid.registry import suggestion

CROPS = ("upscale", "pad", "none")
FILLS = ("mean", "constant", "random", "zero")
ASPECT_SAMPLINGS = ("uniform", "log_uniform")
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 grey
YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


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


def hue_matrix(shift: torch.Tensor) -> torch.Tensor:
    """[B] hue shifts (fractions of a turn) -> [B, 3, 3] RGB matrices rotating the chroma plane in
    YIQ space (close to an HSV hue shift; red -> green for +1/3)."""
    yiq = torch.tensor(YIQ, dtype=torch.float64)
    angle = -2 * math.pi * shift.double()
    rot = torch.zeros(len(shift), 3, 3, dtype=torch.float64)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = angle.cos(), -angle.sin(), angle.sin(), angle.cos()
    return (torch.linalg.inv(yiq) @ rot @ yiq).float()


def saturation_matrix(factor: torch.Tensor) -> torch.Tensor:
    """[B] factors -> [B, 3, 3]: x -> grey(x) + f (x - grey(x)) per pixel."""
    grey = torch.tensor(LUMA).view(1, 1, 3).expand(len(factor), 3, 3)
    f = factor.view(-1, 1, 1)
    return f * torch.eye(3) + (1 - f) * grey


class BatchAugment:
    """Training augmentation for uint8 [B, Hs, Ws, 3] batches (see the module docstring).

    ``size`` [H, W]: the output size (None: the input's, for ``crop`` pad | none). Options mirror
    ``cfg.augment``: ``crop`` (upscale | pad | none), ``crop_scale``, ``crop_prob`` (an upscale
    sample not cropped is the whole stored image, resampled to [H, W] by nearest rows and columns),
    ``pad``, ``flip_prob``, ``color_jitter`` {prob, brightness, contrast, saturation, hue},
    ``erasing`` {prob, area: [lo, hi], aspect, aspect_sampling: uniform | log_uniform, attempts,
    fill: mean | constant | random | zero, fill_value: [3] (constant, in normalised units)}.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], size: Sequence[int] | None = None,
                 crop: str = "upscale", crop_scale: float = 1.125, crop_prob: float = 1.0, pad: int = 10,
                 flip_prob: float = 0.5, color_jitter: dict | None = None, erasing: dict | None = None):
        if crop not in CROPS:
            raise ValueError(f"unknown augment.crop '{crop}'{suggestion(str(crop), CROPS)}")
        if crop == "upscale" and crop_scale < 1:
            raise ValueError(f"augment.crop_scale must be >= 1, got {crop_scale}")
        if size is None and crop == "upscale":
            raise ValueError("an upscale crop needs the output size (input.size)")
        self.size = (int(size[0]), int(size[1])) if size is not None else None
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
        self.erase_aspect_sampling = str(er.get("aspect_sampling", "uniform"))
        self.erase_attempts = int(er.get("attempts", 100))
        self.erase_fill = str(er.get("fill", "mean"))
        self.erase_fill_value = tuple(float(v) for v in er.get("fill_value", (0.0, 0.0, 0.0)))
        if self.erase_fill not in FILLS:
            raise ValueError(f"unknown augment.erasing.fill '{self.erase_fill}'{suggestion(self.erase_fill, FILLS)}")
        if self.erase_aspect_sampling not in ASPECT_SAMPLINGS:
            raise ValueError(f"unknown augment.erasing.aspect_sampling '{self.erase_aspect_sampling}'"
                             f"{suggestion(self.erase_aspect_sampling, ASPECT_SAMPLINGS)}")
        if self.erase_attempts < 1:
            raise ValueError(f"augment.erasing.attempts must be >= 1, got {self.erase_attempts}")
        if not 0 < self.erase_aspect <= 1:
            raise ValueError(f"augment.erasing.aspect must be in (0, 1], got {self.erase_aspect}")
        if len(self.erase_fill_value) != 3:
            raise ValueError(f"augment.erasing.fill_value needs 3 values (R, G, B), got {self.erase_fill_value}")

    @classmethod
    def from_config(cls, cfg: Any) -> BatchAugment:
        a = cfg.augment
        return cls(cfg.input.pixel_mean, cfg.input.pixel_std, size=cfg.input.size, crop=a.crop,
                   crop_scale=a.crop_scale, crop_prob=a.crop_prob, pad=a.pad, flip_prob=a.flip_prob,
                   color_jitter=a.color_jitter, erasing=a.erasing)

    def stored_size(self, size: Sequence[int] | None = None) -> tuple[int, int]:
        """The [Hs, Ws] the training images are stored at for output ``size``: ``crop_scale`` x
        ``size`` (rounded) for an upscale crop, ``size`` otherwise."""
        h, w = (int(v) for v in (size if size is not None else self.size))
        if self.crop == "upscale" and self.crop_prob > 0:
            return round(h * self.crop_scale), round(w * self.crop_scale)
        return h, w

    # ----------------------------------------------------------------------------- parameters

    def indices(self, b: int, hs: int, ws: int, gen: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Per-sample source rows [B, H] and columns [B, W] (int64) of the output pixels in a
        [Hs, Ws] input, and for a pad crop the in-bounds mask [B, H, W] (None otherwise)."""
        h, w = self.size if self.size is not None else (hs, ws)
        ys, xs = torch.arange(h), torch.arange(w)
        crop_on = torch.rand(b, generator=gen) < self.crop_prob
        valid = None
        if self.crop == "upscale":
            if (hs, ws) != self.stored_size((h, w)):
                raise ValueError(f"upscale crop: images are {hs}x{ws}, expected the stored size "
                                 f"{self.stored_size((h, w))} for output {h}x{w}")
            oy = (torch.rand(b, generator=gen) * (hs - h + 1)).long().clamp_(max=hs - h)
            ox = (torch.rand(b, generator=gen) * (ws - w + 1)).long().clamp_(max=ws - w)
            whole_y = ((ys + 0.5) * hs / h - 0.5).round().long().clamp_(0, hs - 1)  # nearest resample
            whole_x = ((xs + 0.5) * ws / w - 0.5).round().long().clamp_(0, ws - 1)
            rows = torch.where(crop_on[:, None], oy[:, None] + ys, whole_y)
            cols = torch.where(crop_on[:, None], ox[:, None] + xs, whole_x)
        elif self.crop == "pad":
            oy = torch.randint(-self.pad, self.pad + 1, (b,), generator=gen) * crop_on
            ox = torch.randint(-self.pad, self.pad + 1, (b,), generator=gen) * crop_on
            rows, cols = oy[:, None] + ys, ox[:, None] + xs
            valid = ((rows >= 0) & (rows < hs))[:, :, None] & ((cols >= 0) & (cols < ws))[:, None, :]
            rows, cols = rows.clamp(0, hs - 1), cols.clamp(0, ws - 1)
        else:
            rows, cols = ys.expand(b, h), xs.expand(b, w)
        flip = torch.rand(b, generator=gen) < self.flip_prob
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        if valid is not None:
            valid = torch.where(flip[:, None, None], valid.flip(2), valid)
        return rows, cols, valid

    def colour_factors(self, b: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Per-sample jitter factors [B]: brightness, contrast, saturation (1 = off), hue (0 = off)."""
        on = (torch.rand(b, generator=gen) < self.cj_prob).float()

        def factor(amount: float) -> torch.Tensor:
            return 1 + on * (_uniform(gen, b, max(0.0, 1 - amount), 1 + amount) - 1)

        return {"brightness": factor(self.brightness), "contrast": factor(self.contrast),
                "saturation": factor(self.saturation), "hue": on * _uniform(gen, b, -self.hue, self.hue)}

    def colour_map(self, f: dict[str, torch.Tensor], grey_mean: torch.Tensor | None,
                   device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(M [B, 3, 3], c [B, 3]) on ``device`` with jittered value = M @ rgb + c for rgb in [0, 1]:
        brightness (scale), contrast (blend with the grey mean ``grey_mean`` [B] of the input),
        saturation (blend with the pixel's grey), hue (chroma rotation), in that order."""
        b = len(f["brightness"])
        fb = f["brightness"].view(b, 1, 1).to(device)
        fc = f["contrast"].view(b, 1, 1).to(device)
        colour = (hue_matrix(f["hue"]) @ saturation_matrix(f["saturation"])).to(device)  # [B, 3, 3]
        matrix = colour * fb * fc
        mean = grey_mean.to(device) if grey_mean is not None else torch.zeros(b, device=device)
        offset = colour @ ((1 - fc) * fb * mean.view(b, 1, 1)).expand(b, 3, 1)
        return matrix, offset.view(b, 3)

    def erase_boxes(self, b: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
        """Per-sample rectangles [B, 4] (y0, x0, eh, ew), float32; eh = ew = 0 where nothing is erased.

        RandomErasing (Zhong et al.) for all samples at once: a sample is erased with probability
        ``prob``; it draws ``attempts`` candidates [B, attempts] (area fraction uniform in ``area``,
        aspect eh / ew in [aspect, 1 / aspect], ``uniform`` or ``log_uniform``; sides rounded half to
        even) and keeps the first with eh < h and ew < w (a side rounded to 0 erases nothing, as in the
        releases); if none fits, nothing is erased. The top-left corner is uniform over the positions
        where the box lies inside the image.
        """
        n, lo, hi, r1 = self.erase_attempts, *self.erase_area, self.erase_aspect
        area = (lo + (hi - lo) * torch.rand(b, n, generator=gen, dtype=torch.float64)) * (h * w)
        u = torch.rand(b, n, generator=gen, dtype=torch.float64)
        if self.erase_aspect_sampling == "uniform":
            ratio = r1 + (1 / r1 - r1) * u
        else:
            ratio = torch.exp(math.log(r1) * (1 - 2 * u))
        eh, ew = torch.sqrt(area * ratio).round(), torch.sqrt(area / ratio).round()
        fits = (eh < h) & (ew < w)
        first = fits.to(torch.uint8).argmax(1, keepdim=True)  # the first candidate that fits (0 if none)
        on = (torch.rand(b, generator=gen) < self.erase_prob) & fits.any(1)
        eh = torch.where(on, eh.gather(1, first).squeeze(1), 0.0).float()
        ew = torch.where(on, ew.gather(1, first).squeeze(1), 0.0).float()
        y0 = torch.floor(torch.rand(b, generator=gen) * (h - eh + 1))
        x0 = torch.floor(torch.rand(b, generator=gen) * (w - ew + 1))
        return torch.stack([y0, x0, eh, ew], dim=1)

    # ---------------------------------------------------------------------------------- apply

    def __call__(self, images: Any, gen: torch.Generator, masks: Any = None,
                 device: torch.device | str | None = None, index: Any = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 [B, Hs, Ws, 3] (+ masks [B, Hs, Ws]) -> (float32 [B, 3, H, W], uint8 masks or None).
        With ``index`` ([B] sample numbers), ``images`` (and ``masks``) are the whole store [N, ...]
        and the batch is gathered from it in the same pass as the crop."""
        x = _as_tensor(images, device)
        dev = x.device
        hs, ws = x.shape[1:3]
        m = _as_tensor(masks, dev) if masks is not None else None
        samples = torch.as_tensor(index, dtype=torch.int64) if index is not None else torch.arange(x.shape[0])
        b = len(samples)

        # 1. geometry: one gather of uint8 pixels (flat indices into [N * Hs * Ws, 3])
        rows, cols, valid = self.indices(b, hs, ws, gen)
        h, w = rows.shape[1], cols.shape[1]
        dtype = torch.int32 if x.shape[0] * hs * ws < 2**31 else torch.int64
        row_start = ((samples.view(b, 1) * hs + rows) * ws).to(dev, dtype)  # [B, H]
        flat = (row_start.view(b, h, 1) + cols.to(dev, dtype).view(b, 1, w)).view(-1)
        x = torch.index_select(x.reshape(-1, 3), 0, flat)  # [B * H * W, 3]
        if m is not None:
            m = torch.index_select(m.reshape(-1), 0, flat).view(b, h, w)
        if valid is not None:
            valid = valid.to(dev)
            x = x * valid.view(-1, 1)
            if m is not None:
                m = m * valid

        # 2. colour jitter and normalisation: out = clamp(A @ rgb255 + c) per sample
        std = torch.tensor(self.std, device=dev)
        mean = torch.tensor(self.mean, device=dev)
        xf = x.view(b, h * w, 3).float()
        matrix, offset = torch.eye(3, device=dev).expand(b, 3, 3), torch.zeros(b, 3, device=dev)
        jitter = self.cj_prob > 0 and bool(self.brightness or self.contrast or self.saturation or self.hue)
        if jitter:  # parameters drawn on the CPU generator; no device synchronisation
            f = self.colour_factors(b, gen)
            grey = xf.mean(1) @ torch.tensor(LUMA, device=dev) / 255.0 if self.contrast else None
            matrix, offset = self.colour_map(f, grey, dev)
        a = matrix / (255.0 * std.view(1, 3, 1))  # normalisation folded in
        c = (offset - mean) / std
        out = torch.baddbmm(c.view(b, 3, 1), a, xf.transpose(1, 2))  # [B, 3, H*W], NCHW order
        if jitter:  # clamp to [0, 1] before normalisation, i.e. to per-channel bounds after it
            lo = [-m / s for m, s in zip(self.mean, self.std)]
            hi = [(1 - m) / s for m, s in zip(self.mean, self.std)]
            for k in range(3):
                out[:, k].clamp_(lo[k], hi[k])
        out = out.view(b, 3, h, w)

        # 3. random erasing: one in-place product with the kept-pixel mask
        if self.erase_prob > 0:
            box = self.erase_boxes(b, h, w, gen).to(dev)
            ys = torch.arange(h, device=dev).view(1, h, 1)
            xs = torch.arange(w, device=dev).view(1, 1, w)
            y0, x0, eh, ew = (box[:, i].view(b, 1, 1) for i in range(4))
            inside_rows = ((ys >= y0) & (ys < y0 + eh)).to(out.dtype)  # [B, H, 1]
            inside_cols = ((xs >= x0) & (xs < x0 + ew)).to(out.dtype)  # [B, 1, W]
            keep = torch.baddbmm(torch.ones((), device=dev), inside_rows, inside_cols, alpha=-1).unsqueeze(1)  # 1 - r c
            out.mul_(keep)  # "mean" fill: 0 after normalisation
            if self.erase_fill == "random":
                out.add_((1 - keep) * torch.randn(b, 3, h, w, generator=gen).to(dev))
            elif self.erase_fill != "mean":  # constant: fill_value as given; zero: black, normalised
                black = [-mu / sd for mu, sd in zip(self.mean, self.std)]
                fill = self.erase_fill_value if self.erase_fill == "constant" else black
                value = torch.tensor(fill, device=dev)
                out.add_((1 - keep) * value.view(1, 3, 1, 1))
        return out, m
