"""Batched augmentation: identity when off, flip, crop vs a slow reference, erasing, masks."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reid.data.transforms import BatchAugment, to_input

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
OFF = dict(crop="none", flip_prob=0.0)


def batch(b=6, h=32, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, h, w, 3), generator=g, dtype=torch.uint8)


def plain(x):
    m, s = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (x.permute(0, 3, 1, 2).float() / 255 - m) / s


def test_all_off_equals_plain_normalisation():
    x = batch()
    out, masks = BatchAugment(MEAN, STD, **OFF)(x, torch.Generator().manual_seed(0))
    assert out.shape == (6, 3, 32, 16) and out.dtype == torch.float32 and masks is None
    assert torch.allclose(out, plain(x), atol=1e-5)
    assert torch.allclose(to_input(x.numpy(), MEAN, STD), plain(x), atol=1e-5)
    # an upscale crop with probability 0 is the identity too
    out, _ = BatchAugment(MEAN, STD, crop="upscale", crop_prob=0.0, flip_prob=0.0)(x, torch.Generator())
    assert torch.allclose(out, plain(x), atol=1e-5)


def test_flip_flips_images_and_masks():
    x = batch()
    m = torch.randint(0, 20, (6, 32, 16), dtype=torch.uint8)
    out, mo = BatchAugment(MEAN, STD, crop="none", flip_prob=1.0)(x, torch.Generator(), m)
    assert torch.allclose(out, plain(x).flip(3), atol=1e-5)
    assert torch.equal(mo, m.flip(2))


def test_upscale_crop_matches_resize_then_crop():
    h, w, s = 32, 16, 1.125
    x = batch(h=h, w=w)
    aug = BatchAugment(MEAN, STD, crop="upscale", crop_scale=s, flip_prob=0.0)
    theta = aug.affine(6, h, w, torch.Generator().manual_seed(0))
    oy, ox = 3, 1  # fixed integer offsets in the upscaled image
    theta[:, 0, 2] = 1 / s - 1 + 2 * ox / (s * w)
    theta[:, 1, 2] = 1 / s - 1 + 2 * oy / (s * h)
    aug.affine = lambda *a, **k: theta
    out, _ = aug(x, torch.Generator())
    big = F.interpolate(x.permute(0, 3, 1, 2).float() / 255, size=(int(h * s), int(w * s)), mode="bilinear",
                        align_corners=False)
    ref = big[:, :, oy:oy + h, ox:ox + w]
    ref = (ref - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(out, ref, atol=1e-4)


def test_pad_crop_shifts_with_zero_fill():
    x = batch()
    m = torch.ones(6, 32, 16, dtype=torch.uint8)
    out, mo = BatchAugment(MEAN, STD, crop="pad", pad=4, flip_prob=0.0)(x, torch.Generator().manual_seed(1), m)
    ref = plain(x)
    black = plain(torch.zeros(1, 1, 1, 3, dtype=torch.uint8)).view(3)
    for i in range(6):  # each sample is its input shifted by an integer (dy, dx) in [-4, 4]
        ok = False
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                shifted = torch.roll(ref[i], (-dy, -dx), (1, 2))
                ys = torch.arange(32).view(32, 1) + dy
                xs = torch.arange(16).view(1, 16) + dx
                inside = (ys >= 0) & (ys < 32) & (xs >= 0) & (xs < 16)
                want = torch.where(inside, shifted, black.view(3, 1, 1))
                if torch.allclose(out[i], want, atol=1e-4):
                    ok = ok or torch.equal(mo[i], inside.to(torch.uint8))
        assert ok, i


def test_erasing_area_and_fill():
    b, h, w = 64, 64, 32
    x = torch.full((b, h, w, 3), 200, dtype=torch.uint8)
    aug = BatchAugment(MEAN, STD, **OFF, erasing={"prob": 1.0, "area": [0.1, 0.3], "aspect": 0.3, "fill": "mean"})
    out, _ = aug(x, torch.Generator().manual_seed(0))
    erased = (out.abs() < 1e-6).all(dim=1).float()  # "mean" fill is 0 after normalisation
    frac = erased.mean(dim=(1, 2))
    assert (frac > 0.08).all() and (frac < 0.32).all()
    rows, cols = erased.any(2), erased.any(1)  # a rectangle: area = rows x cols
    assert torch.equal(erased.sum((1, 2)), rows.sum(1).float() * cols.sum(1).float())
    assert len({tuple(r.nonzero()[0].tolist()) for r in rows}) > 10  # positions vary per sample
    off, _ = BatchAugment(MEAN, STD, **OFF, erasing={"prob": 0.0})(x, torch.Generator())
    assert torch.allclose(off, plain(x), atol=1e-5)
    zero = BatchAugment(MEAN, STD, **OFF, erasing={"prob": 1.0, "fill": "zero"})(x, torch.Generator())[0]
    black = plain(torch.zeros(1, 1, 1, 3, dtype=torch.uint8)).view(1, 3, 1, 1)
    assert ((zero - black).abs() < 1e-5).all(dim=1).any()


def test_determinism_colour_jitter_and_masks_untouched_by_colour():
    x = batch(b=8)
    m = torch.randint(0, 20, (8, 32, 16), dtype=torch.uint8)
    aug = BatchAugment(MEAN, STD, crop="upscale", flip_prob=0.5,
                       color_jitter={"prob": 1.0, "brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.1},
                       erasing={"prob": 0.5})
    a, ma = aug(x, torch.Generator().manual_seed(7), m)
    b, mb = aug(x, torch.Generator().manual_seed(7), m)
    c, _ = aug(x, torch.Generator().manual_seed(8), m)
    assert torch.equal(a, b) and torch.equal(ma, mb) and not torch.equal(a, c)
    assert ma.dtype == torch.uint8 and set(ma.unique().tolist()) <= set(m.unique().tolist())
    cj = BatchAugment(MEAN, STD, **OFF, color_jitter={"prob": 1.0, "brightness": 0.5})
    out, mo = cj(x, torch.Generator().manual_seed(0), m)
    assert torch.equal(mo, m)  # masks ignore colour
    ratio = (out * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)) / (
        plain(x) * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)).clamp_min(1e-3)
    per_sample = ratio[:, :, :8, :8].flatten(1).median(1).values
    assert per_sample.std() > 0.02 and ((per_sample > 0.45) & (per_sample < 1.55)).all()


def test_masks_follow_geometry():
    """A marked column of the image and of the mask end up at the same place."""
    x = torch.zeros(16, 32, 16, 3, dtype=torch.uint8)
    x[:, :, 3:5] = 255
    m = torch.zeros(16, 32, 16, dtype=torch.uint8)
    m[:, :, 3:5] = 1
    out, mo = BatchAugment(MEAN, STD, crop="upscale", flip_prob=0.5)(x, torch.Generator().manual_seed(3), m)
    bright = out[:, 0] > plain(torch.full((1, 1, 1, 3), 128, dtype=torch.uint8))[0, 0, 0, 0]
    agree = (bright == mo.bool()).float().mean()
    assert agree > 0.97
    assert (mo.float().mean((1, 2)) > 0).all()


def test_hue_rotation_turns_primaries():
    from reid.data.transforms import _rotate_hue

    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).repeat(3, 1, 1, 1)
    out = _rotate_hue(red, torch.tensor([0.0, 1 / 3, 2 / 3])).flatten(1)
    assert torch.allclose(out[0], red[0].flatten(), atol=1e-5)
    assert out[1].argmax() == 1 and out[2].argmax() == 2  # red -> green -> blue, like an HSV shift
