"""Synthetic persons in the exact Market-1501 on-disk format, generated from a seed.

Each identity wears per-part clothing (upper, lower, shoes, hair) whose colours come from a small
shared palette, with a texture (plain, horizontal/vertical stripes, checks), sleeve and trouser
lengths and a body shape. Each image jitters pose (view, walking phase), scale and position, and
applies its camera's colour cast and illumination, a cluttered background, blur, noise and random
occluders, so raw pixels do not identify a person (see ``tests/test_data_synthetic.py``).

:func:`generate_market` writes a set (and its body-part label maps, PNG, same stem, under
``masks/<split>/``); the registered ``synthetic`` data set (``reid/data/datasets/synthetic.py``)
caches it and reads it back with the Market-1501 parser.

Mask labels follow LIP (Look Into Person) numbering, see :data:`PART_LABELS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

#: LIP label numbers used in the masks (0 is background; occluders are background too).
PART_LABELS = {
    "background": 0,
    "hair": 2,
    "upper_clothes": 5,
    "pants": 9,
    "skirt": 12,
    "face": 13,
    "left_arm": 14,
    "right_arm": 15,
    "left_leg": 16,
    "right_leg": 17,
    "left_shoe": 18,
    "right_shoe": 19,
}
#: Clothing palette shared by all identities (RGB in [0, 1]): colour alone cannot identify.
PALETTE = np.array([
    [0.10, 0.10, 0.12], [0.92, 0.92, 0.90], [0.75, 0.12, 0.12], [0.15, 0.25, 0.65],
    [0.20, 0.55, 0.25], [0.90, 0.80, 0.20], [0.55, 0.55, 0.58], [0.45, 0.28, 0.15],
    [0.85, 0.45, 0.65], [0.30, 0.65, 0.80],
], dtype=np.float32)
SKIN = np.array([[0.96, 0.80, 0.69], [0.87, 0.67, 0.52], [0.65, 0.46, 0.33], [0.42, 0.29, 0.20]],
                dtype=np.float32)
HAIR = np.array([[0.08, 0.06, 0.05], [0.35, 0.22, 0.12], [0.80, 0.68, 0.40], [0.60, 0.60, 0.60]],
                dtype=np.float32)
PATTERNS = ("plain", "hstripes", "vstripes", "checks")
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class Identity:
    """The appearance of one person (indices into the palettes, pattern, shape)."""

    skin: int
    hair: int
    long_hair: bool
    upper: int
    upper2: int
    upper_pattern: int
    upper_period: float  # texture period in person heights
    long_sleeves: bool
    lower: int
    lower2: int
    lower_pattern: int
    lower_length: float  # where the lower garment ends (0.5 waist .. 0.95 ankle)
    skirt: bool
    shoes: int
    width: float  # body width factor
    height: float  # body height factor


def make_identity(rng: np.random.Generator) -> Identity:
    """A random identity; colours drawn from the shared :data:`PALETTE`."""
    n = len(PALETTE)
    upper, lower = rng.choice(n, 2)
    skirt = bool(rng.random() < 0.15)
    return Identity(
        skin=int(rng.integers(len(SKIN))),
        hair=int(rng.integers(len(HAIR))),
        long_hair=bool(rng.random() < 0.35),
        upper=int(upper),
        upper2=int((upper + rng.integers(1, n)) % n),
        upper_pattern=int(rng.choice(4, p=[0.4, 0.25, 0.15, 0.2])),
        upper_period=float(rng.uniform(0.03, 0.08)),
        long_sleeves=bool(rng.random() < 0.5),
        lower=int(lower),
        lower2=int((lower + rng.integers(1, n)) % n),
        lower_pattern=int(rng.choice(4, p=[0.7, 0.1, 0.1, 0.1])),
        lower_length=float(0.72 if skirt else rng.choice([0.76, 0.93], p=[0.3, 0.7])),
        skirt=skirt,
        shoes=int(rng.integers(n)),
        width=float(rng.uniform(0.85, 1.2)),
        height=float(rng.uniform(0.9, 1.0)),
    )


@dataclass(frozen=True)
class Camera:
    """A camera's colour cast (per-channel gain), brightness, blur and background colours."""

    gain: np.ndarray  # [3]
    brightness: float
    blur: int
    wall: np.ndarray  # [3]
    floor: np.ndarray  # [3]


def make_cameras(num: int, rng: np.random.Generator) -> list[Camera]:
    return [
        Camera(
            gain=rng.uniform(0.8, 1.2, 3).astype(np.float32),
            brightness=float(rng.uniform(0.7, 1.2)),
            blur=int(rng.integers(0, 2)),
            wall=rng.uniform(0.2, 0.8, 3).astype(np.float32),
            floor=rng.uniform(0.15, 0.6, 3).astype(np.float32),
        )
        for _ in range(num)
    ]


def _capsule(u, v, u0, v0, u1, v1, r):
    """Points within ``r`` of the segment (u0, v0)-(u1, v1); also the position t along it."""
    du, dv = u1 - u0, v1 - v0
    t = np.clip(((u - u0) * du + (v - v0) * dv) / (du * du + dv * dv + 1e-9), 0.0, 1.0)
    d2 = (u - u0 - t * du) ** 2 + (v - v0 - t * dv) ** 2
    return d2 < r * r, t


def _texture(pattern: int, u, v, period: float):
    """Boolean texture map (True: secondary colour) in body coordinates."""
    if pattern == 1:
        return np.sin(2 * np.pi * v / period) > 0
    if pattern == 2:
        return np.sin(2 * np.pi * u / period) > 0
    if pattern == 3:
        return (np.sin(2 * np.pi * v / period) > 0) ^ (np.sin(2 * np.pi * u / period) > 0)
    return np.zeros(np.broadcast(u, v).shape, dtype=bool)


def _box_blur(img: np.ndarray, r: int) -> np.ndarray:
    """Separable (2r+1)-box blur of [H, W, C] with edge padding."""
    if r <= 0:
        return img
    h, w = img.shape[:2]
    p = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="edge")
    img = sum(p[i:i + h] for i in range(2 * r + 1)) / (2 * r + 1)
    p = np.pad(img, ((0, 0), (r, r), (0, 0)), mode="edge")
    return sum(p[:, i:i + w] for i in range(2 * r + 1)) / (2 * r + 1)


def _background(rng: np.random.Generator, h: int, w: int, cam: Camera | None) -> np.ndarray:
    """Wall/floor with a horizon, a gradient and random clutter rectangles: [H, W, 3] float."""
    wall = cam.wall if cam is not None else rng.uniform(0.2, 0.8, 3)
    floor = cam.floor if cam is not None else rng.uniform(0.15, 0.6, 3)
    wall = np.clip(wall + rng.normal(0, 0.08, 3), 0, 1)
    floor = np.clip(floor + rng.normal(0, 0.08, 3), 0, 1)
    ys = np.arange(h, dtype=np.float32)[:, None, None] / h
    horizon = rng.uniform(0.55, 0.8)
    img = np.where(ys < horizon, wall, floor) * (0.85 + 0.3 * ys)
    img = np.broadcast_to(img, (h, w, 3)).astype(np.float32).copy()
    for _ in range(int(rng.integers(3, 9))):
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(-w // 4, w))
        bh, bw = int(rng.integers(h // 16, h // 2)), int(rng.integers(w // 8, w // 2))
        colour = PALETTE[rng.integers(len(PALETTE))] if rng.random() < 0.5 else rng.random(3)
        img[max(0, y0):y0 + bh, max(0, x0):x0 + bw] = colour * rng.uniform(0.6, 1.0)
    return img


def render_person(
    identity: Identity,
    rng: np.random.Generator,
    camid: int = 0,
    size: tuple[int, int] = (128, 64),
    cameras: list[Camera] | None = None,
    occlusion_prob: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``identity`` seen by camera ``camid``: (uint8 image [H, W, 3], uint8 LIP labels [H, W]).

    ``cameras`` (from :func:`make_cameras`) fixes each camera's look; without it the camera look is
    random per image. Pose, scale, position, background, blur, noise and occluders come from ``rng``.
    """
    h, w = size
    cam = cameras[camid % len(cameras)] if cameras else None
    img = _background(rng, h, w, cam)
    labels = np.zeros((h, w), dtype=np.uint8)

    # person frame: v in [0, 1] head to feet, u horizontal, both in person heights
    ph = h * rng.uniform(0.8, 0.97) * identity.height
    top = rng.uniform(0.0, h - ph) if h > ph else 0.0
    cx = w / 2 + rng.normal(0, 0.06) * w
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    v = (ys + 0.5 - top) / ph
    u = (xs + 0.5 - cx) / ph

    view = int(rng.integers(4))  # 0 front, 1 back, 2/3 side (facing left/right)
    side = view >= 2
    phase = rng.uniform(-1, 1)
    tw = 0.105 * identity.width * (0.65 if side else 1.0)  # half torso width
    skin, hair = SKIN[identity.skin], HAIR[identity.hair]
    left, right = (14, 15) if view != 1 else (15, 14)
    # shading: darker toward the body's edge
    shade = np.broadcast_to(1.0 - 0.35 * np.clip(np.abs(u) / (tw + 0.05), 0, 1) ** 2, (h, w))

    def paint(region, colour, label):
        """Fill ``region`` [H, W] with ``colour`` ([3] or per pixel [H, W, 3]), shaded."""
        colour = np.broadcast_to(colour, (h, w, 3))[region] if colour.ndim == 3 else colour
        img[region] = colour * shade[region][:, None]
        labels[region] = label

    up_tex = _texture(identity.upper_pattern, u, v, identity.upper_period)
    upper_colour = np.where(up_tex[..., None], PALETTE[identity.upper2], PALETTE[identity.upper])
    lo_tex = _texture(identity.lower_pattern, u, v, 0.06)
    lower_colour = np.where(lo_tex[..., None], PALETTE[identity.lower2], PALETTE[identity.lower])

    # legs (skin below the garment), lower garment, shoes
    stride = 0.09 * phase if side else 0.02 * phase
    hip_dx = 0.025 if side else 0.05 * identity.width
    for sgn, lab, shoe_lab in ((-1, 17, 19), (1, 16, 18)):
        ankle_u = sgn * (stride if side else hip_dx + 0.01)
        leg, t = _capsule(u, v, sgn * hip_dx * (0.3 if side else 1.0), 0.55, ankle_u, 0.93, 0.042)
        covered = v < identity.lower_length
        paint(leg & ~covered, skin, lab if view != 1 else 33 - lab)
        paint(leg & covered, lower_colour, 9)
        shoe = ((u - ankle_u - (0.02 if view == 3 else -0.02 if view == 2 else 0)) / 0.05) ** 2 + (
            (v - 0.955) / 0.03) ** 2 < 1
        paint(shoe, PALETTE[identity.shoes], shoe_lab if view != 1 else 37 - shoe_lab)
    hips = (v >= 0.48) & (v < 0.58) & (np.abs(u) < tw * 0.95)
    paint(hips, lower_colour, 9)
    if identity.skirt:
        half = tw * 0.9 + (v - 0.5) * 0.5
        paint((v >= 0.48) & (v < identity.lower_length) & (np.abs(u) < half), lower_colour, 12)

    # arms behind the torso in side view (far arm), torso, near arm
    def arm(sgn, swing):
        sh_u = sgn * (tw + 0.025) if not side else 0.0
        hand_u = sh_u + (swing if side else sgn * 0.02)
        region, t = _capsule(u, v, sh_u, 0.17, hand_u, 0.5, 0.03)
        sleeve = t < (1.0 if identity.long_sleeves else 0.35)
        paint(region & sleeve, upper_colour, 5)
        paint(region & ~sleeve, skin, left if sgn > 0 else right)

    if side:
        arm(-1, -0.08 * phase)
    else:
        arm(-1, 0.0)
        arm(1, 0.0)
    torso_half = tw * (1.0 - 0.12 * np.clip((v - 0.15) / 0.35, 0, 1))
    torso = (v >= 0.14) & (v < 0.52) & (np.abs(u) < torso_half)
    torso &= ~((v < 0.18) & (np.abs(u) > torso_half - (0.18 - v)))  # rounded shoulders
    paint(torso, upper_colour, 5)
    if side:
        arm(1, 0.08 * phase)

    # head: face and hair (the back view shows only hair)
    head_u = 0.01 if view == 3 else -0.01 if view == 2 else 0.0
    head = ((u - head_u) / 0.05) ** 2 + ((v - 0.075) / 0.068) ** 2 < 1
    hair_region = head & ((v < 0.04) | (view == 1))
    if identity.long_hair:
        hair_region |= (v >= 0.04) & (v < 0.2) & (np.abs(u - head_u) < 0.06) & ~(head & (view != 1))
    paint(head & ~hair_region, skin, 13)
    paint(hair_region, hair, 2)

    # occluder (a box or pole in front), background label where it covers the person
    if rng.random() < occlusion_prob:
        oh, ow = int(rng.uniform(0.15, 0.4) * h), int(rng.uniform(0.3, 0.8) * w)
        oy = h - oh if rng.random() < 0.6 else int(rng.integers(0, h - oh))
        ox = int(rng.integers(-ow // 2, w - ow // 2))
        sl = (slice(oy, oy + oh), slice(max(0, ox), max(0, ox + ow)))
        img[sl] = rng.random(3) * (0.8 + 0.2 * (np.arange(oh)[:, None, None] % 6 < 3))
        labels[sl] = 0

    # camera: colour cast, illumination, blur, noise
    gain = cam.gain if cam is not None else rng.uniform(0.75, 1.25, 3)
    bright = (cam.brightness if cam is not None else rng.uniform(0.65, 1.25)) * rng.uniform(0.85, 1.15)
    img = img * gain * bright
    blur = (cam.blur if cam is not None else 0) + int(rng.random() < 0.3)
    img = _box_blur(img, blur)
    img = img + rng.normal(0, 0.025, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), labels


# ------------------------------------------------------------------------------------ generation


def _split_cameras(rng: np.random.Generator, n: int, cameras: int) -> np.ndarray:
    """Camera per image of one identity: 2+ cameras, each with >= 2 images when possible."""
    k = int(min(cameras, max(2, n // 2), rng.integers(2, cameras + 1)))
    chosen = rng.choice(cameras, k, replace=False)
    cams = np.concatenate([np.repeat(chosen, min(2, n // k)), rng.choice(chosen, n)])[:n]
    return rng.permutation(cams)


def generate_market(
    out: Path, *, num_ids: int, num_test_ids: int, images_per_id: int, cameras: int,
    height: int, width: int, seed: int, distractors: int, junk: int, query_per_id: int,
    occlusion_prob: float, masks: bool,
) -> None:
    """Write a Market-1501-format set (and masks) under ``out`` (= the ``Market-1501-...`` folder)."""
    from reid.data.datasets.market import MARKET_SPLITS

    rng = np.random.default_rng(seed)
    cams = make_cameras(cameras, rng)
    total = num_ids + num_test_ids
    pids = rng.permutation(np.arange(1, total + 1))
    idents = [make_identity(rng) for _ in range(total)]
    for split in MARKET_SPLITS:
        (out / split).mkdir(parents=True)
        if masks:
            (out / "masks" / split).mkdir(parents=True)
    frames = np.zeros(cameras, dtype=np.int64)

    def write(split: str, pid: int, camid: int, ident: Identity | None, box: int = 1) -> None:
        frames[camid] += int(rng.integers(1, 40))
        seq = 1 + int(frames[camid] // 5000) % 6
        name = f"{pid:04d}_c{camid + 1}s{seq}_{frames[camid]:06d}_{box:02d}".replace("-001_", "-1_", 1)
        if ident is None:  # junk: background crops, sometimes with a person fragment
            image = (_background(rng, height, width, cams[camid]) * 255).astype(np.uint8)
            label = np.zeros((height, width), dtype=np.uint8)
        else:
            image, label = render_person(ident, rng, camid, (height, width), cams, occlusion_prob)
        Image.fromarray(image).save(out / split / f"{name}.jpg", quality=92)
        if masks:
            Image.fromarray(label).save(out / "masks" / split / f"{name}.png")

    for i in range(total):
        camids = _split_cameras(rng, images_per_id, cameras)
        if i < num_ids:
            for c in camids:
                write("bounding_box_train", int(pids[i]), int(c), idents[i])
            continue
        # one query per distinct camera (each camera of an identity has >= 2 of its images)
        queries = {int(np.flatnonzero(camids == c)[0]) for c in rng.permutation(np.unique(camids))[:query_per_id]}
        for j, c in enumerate(camids):
            write("query" if j in queries else "bounding_box_test", int(pids[i]), int(c), idents[i])
    for _ in range(distractors):
        write("bounding_box_test", 0, int(rng.integers(cameras)), make_identity(rng))
    for _ in range(junk):
        write("bounding_box_test", -1, int(rng.integers(cameras)), None)
