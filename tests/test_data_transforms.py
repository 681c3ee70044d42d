"""Batched augmentation: identity when off, flip, crops as integer windows, colour map vs the
sequential per-operation formulas, erasing, masks."""
from __future__ import annotations

import math
import random

import pytest
import torch

from reid.data.transforms import BatchAugment, to_input

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
OFF = dict(crop="none", flip_prob=0.0)


def batch(b=6, h=32, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, h, w, 3), generator=g, dtype=torch.uint8)


def plain(x):
    m, s = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (x.permute(0, 3, 1, 2).float() / 255 - m) / s


@pytest.mark.cuda_capable
def test_all_off_equals_plain_normalisation(device):
    x = batch()
    out, masks = BatchAugment(MEAN, STD, **OFF)(x, torch.Generator().manual_seed(0), device=device)
    assert out.device.type == device.type
    out = out.cpu()
    assert out.shape == (6, 3, 32, 16) and out.dtype == torch.float32 and masks is None
    assert torch.allclose(out, plain(x), atol=1e-5)
    assert torch.allclose(to_input(x.numpy(), MEAN, STD), plain(x), atol=1e-5)
    # an upscale crop with probability 0 is the identity too
    out, _ = BatchAugment(MEAN, STD, (32, 16), crop="upscale", crop_prob=0.0, flip_prob=0.0)(x, torch.Generator())
    assert torch.allclose(out, plain(x), atol=1e-5)


def test_flip_flips_images_and_masks():
    x = batch()
    m = torch.randint(0, 20, (6, 32, 16), dtype=torch.uint8)
    out, mo = BatchAugment(MEAN, STD, crop="none", flip_prob=1.0)(x, torch.Generator(), m)
    assert torch.allclose(out, plain(x).flip(3), atol=1e-5)
    assert torch.equal(mo, m.flip(2))


def test_upscale_crop_is_a_random_integer_window_of_the_upscaled_store():
    """The store holds images resized by crop_scale; a crop is a window of it (= resize then crop)."""
    h, w, s = 32, 16, 1.125
    aug = BatchAugment(MEAN, STD, (h, w), crop="upscale", crop_scale=s, flip_prob=0.0)
    assert aug.stored_size() == (36, 18)
    x = batch(b=64, h=36, w=18)
    out, _ = aug(x, torch.Generator().manual_seed(0))
    ref = plain(x)
    offsets = []
    for i in range(64):
        hits = [(oy, ox) for oy in range(5) for ox in range(3)
                if torch.allclose(out[i], ref[i, :, oy:oy + h, ox:ox + w], atol=1e-5)]
        assert len(hits) == 1, i
        offsets += hits
    assert set(offsets) == {(oy, ox) for oy in range(5) for ox in range(3)}  # every window is drawn
    with pytest.raises(ValueError, match="stored size"):
        aug(batch(h=h, w=w), torch.Generator())


def test_upscale_crop_prob_leaves_whole_images_resampled():
    h, w = 32, 16
    aug = BatchAugment(MEAN, STD, (h, w), crop="upscale", crop_prob=0.5, flip_prob=0.0)
    x = batch(b=32, h=36, w=18)
    out, _ = aug(x, torch.Generator().manual_seed(2))
    ref = plain(x)
    rows = ((torch.arange(h) + 0.5) * 36 / h - 0.5).round().long()
    cols = ((torch.arange(w) + 0.5) * 18 / w - 0.5).round().long()
    whole = ref[:, :, rows][:, :, :, cols]  # nearest resample of the whole stored image
    is_whole = torch.tensor([torch.allclose(out[i], whole[i], atol=1e-5) for i in range(32)])
    assert 5 < int(is_whole.sum()) < 27  # about half


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


@pytest.mark.cuda_capable
def test_erasing_area_and_fill(device):
    b, h, w = 64, 64, 32
    x = torch.full((b, h, w, 3), 200, dtype=torch.uint8)
    aug = BatchAugment(MEAN, STD, **OFF, erasing={"prob": 1.0, "area": [0.1, 0.3], "aspect": 0.3, "fill": "mean"})
    out = aug(x, torch.Generator().manual_seed(0), device=device)[0].cpu()
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


def release_erasing_empty(rng, h, w, area, aspect, attempts):
    """One sample of the released RandomErasing's box search (a slow direct loop): True when it
    erases nothing (no candidate fits, or the fitting box has a zero side)."""
    for _ in range(attempts):
        target = rng.uniform(*area) * h * w
        ratio = rng.uniform(aspect, 1 / aspect)
        eh, ew = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if eh < h and ew < w:
            return eh * ew == 0
    return True


@pytest.mark.parametrize("sampling, other", [("uniform", "log_uniform"), ("log_uniform", "uniform")])
def test_erasing_aspect_sampling(sampling, other):
    """Uniform aspect in [r, 1/r] (the releases): P(taller than wide) = (1/r - 1) / (1/r - r) = 0.77 for
    r = 0.3; log-uniform: 0.5. Small areas on a large image: every first candidate fits."""
    r = 0.3
    want = {"uniform": (1 / r - 1) / (1 / r - r), "log_uniform": 0.5}
    aug = BatchAugment(MEAN, STD, **OFF, erasing={"prob": 1.0, "area": [0.02, 0.05], "aspect": r,
                                                  "aspect_sampling": sampling, "attempts": 1})
    box = aug.erase_boxes(20000, 400, 400, torch.Generator().manual_seed(0))
    eh, ew = box[:, 2], box[:, 3]
    assert (eh > 0).all()
    taller = (eh > ew).sum().item() / (eh != ew).sum().item()
    assert abs(taller - want[sampling]) < 0.02 and abs(taller - want[other]) > 0.2
    ratio = eh / ew  # range [r, 1/r] up to rounding of the sides
    assert ratio.min() > r * 0.9 and ratio.max() < 1 / r / 0.9


def test_erasing_attempts_on_a_tiny_image():
    """On a 12x4 image many candidates do not fit: with 1 attempt the fraction of samples left
    unerased is the released loop's (1 attempt); with 100 attempts it is far smaller."""
    b, h, w, area, r = 8000, 12, 4, (0.02, 0.4), 0.3
    empty = {}
    for attempts in (1, 100):
        aug = BatchAugment(MEAN, STD, **OFF, erasing={"prob": 1.0, "area": list(area), "aspect": r,
                                                      "attempts": attempts})
        box = aug.erase_boxes(b, h, w, torch.Generator().manual_seed(0))
        assert ((box[:, 0] + box[:, 2] <= h) & (box[:, 1] + box[:, 3] <= w)).all()
        assert ((box[:, 2] < h) & (box[:, 3] < w)).all()
        empty[attempts] = (box[:, 2] * box[:, 3] == 0).float().mean().item()
    rng = random.Random(0)
    release = sum(release_erasing_empty(rng, h, w, area, r, 1) for _ in range(b)) / b
    assert empty[1] > 0.1 and abs(empty[1] - release) < 0.03
    assert empty[100] < empty[1] / 2
    with pytest.raises(ValueError, match="attempts"):
        BatchAugment(MEAN, STD, **OFF, erasing={"attempts": 0})


def test_erasing_constant_fill_writes_the_exact_value():
    """fill: constant writes fill_value itself (normalised units, BoT's RandomErasing(mean=PIXEL_MEAN)
    after Normalize) inside the box, exactly the "mean" fill's box, and changes nothing outside it."""
    x = torch.full((16, 32, 16, 3), 200, dtype=torch.uint8)
    value = [0.485, 0.456, 0.406]
    er = {"prob": 1.0, "area": [0.1, 0.3]}
    zero, _ = BatchAugment(MEAN, STD, **OFF, erasing={**er, "fill": "mean"})(x, torch.Generator().manual_seed(0))
    const, _ = BatchAugment(MEAN, STD, **OFF, erasing={**er, "fill": "constant", "fill_value": value})(
        x, torch.Generator().manual_seed(0))
    box = (zero == 0).all(dim=1, keepdim=True).expand_as(zero)  # 200 is not the mean in any channel
    assert box.any((1, 2, 3)).all()
    assert torch.equal(const[~box], zero[~box])
    want = torch.tensor(value).view(1, 3, 1, 1).expand_as(const)
    assert torch.equal(const[box], want[box])


def test_determinism_colour_jitter_and_masks_untouched_by_colour():
    x = batch(b=8)
    m = torch.randint(0, 20, (8, 32, 16), dtype=torch.uint8)
    aug = BatchAugment(MEAN, STD, (28, 14), crop="upscale", flip_prob=0.5,
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
    assert a.shape == (8, 3, 28, 14) and ma.shape == (8, 28, 14)
    ratio = (out * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)) / (
        plain(x) * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)).clamp_min(1e-3)
    per_sample = ratio[:, :, :8, :8].flatten(1).median(1).values
    assert per_sample.std() > 0.02 and ((per_sample > 0.45) & (per_sample < 1.55)).all()


@pytest.mark.cuda_capable
def test_masks_follow_geometry(device):
    """A marked column of the image and of the mask end up at the same place."""
    x = torch.zeros(16, 32, 16, 3, dtype=torch.uint8)
    x[:, :, 3:5] = 255
    m = torch.zeros(16, 32, 16, dtype=torch.uint8)
    m[:, :, 3:5] = 1
    aug = BatchAugment(MEAN, STD, (28, 14), crop="upscale", flip_prob=0.5)
    out, mo = (t.cpu() for t in aug(x, torch.Generator().manual_seed(3), m, device=device))
    bright = out[:, 0] > plain(torch.full((1, 1, 1, 3), 128, dtype=torch.uint8))[0, 0, 0, 0]
    agree = (bright == mo.bool()).float().mean()
    assert agree > 0.97
    assert (mo.float().mean((1, 2)) > 0).all()


def test_hue_rotation_turns_primaries():
    from reid.data.transforms import hue_matrix

    red = torch.tensor([1.0, 0.0, 0.0])
    out = hue_matrix(torch.tensor([0.0, 1 / 3, 2 / 3])) @ red
    assert torch.allclose(out[0], red, atol=1e-5)
    assert out[1].argmax() == 1 and out[2].argmax() == 2  # red -> green -> blue, like an HSV shift


def slow_jitter(rgb, fb, fc, fs, fh):
    """One image [3, H, W] in [0, 1], operation by operation as torchvision's ColorJitter defines
    them (fixed order b, c, s, h; hue as the YIQ chroma rotation), clamped once at the end."""
    grey = lambda x: 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]  # noqa: E731
    x = rgb * fb
    x = grey(x).mean() + fc * (x - grey(x).mean())
    x = grey(x) + fs * (x - grey(x))
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
    t = -2 * torch.pi * torch.tensor(fh, dtype=torch.float64)
    rot = torch.tensor([[1, 0, 0], [0, t.cos(), -t.sin()], [0, t.sin(), t.cos()]], dtype=torch.float64)
    x = torch.einsum("ij,jhw->ihw", (torch.linalg.inv(yiq) @ rot @ yiq).float(), x)
    return x.clamp(0, 1)


@pytest.mark.cuda_capable
def test_colour_map_matches_the_sequential_operations(device):
    jitter = {"prob": 0.7, "brightness": 0.4, "contrast": 0.4, "saturation": 0.5, "hue": 0.2}
    aug = BatchAugment(MEAN, STD, **OFF, color_jitter=jitter)
    x = batch(b=16)
    out = aug(x, torch.Generator().manual_seed(5), device=device)[0].cpu()
    gen = torch.Generator().manual_seed(5)
    aug.indices(16, 32, 16, gen)  # the same draws: geometry, then colour
    f = aug.colour_factors(16, gen)
    m, s = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    untouched = 0
    for i in range(16):
        rgb = x[i].permute(2, 0, 1).float() / 255
        args = [float(f[k][i]) for k in ("brightness", "contrast", "saturation", "hue")]
        untouched += args == [1.0, 1.0, 1.0, 0.0]
        torch.testing.assert_close(out[i], (slow_jitter(rgb, *args) - m) / s, atol=2e-4, rtol=0)
    assert 0 < untouched < 16  # prob 0.7: some samples are left alone
