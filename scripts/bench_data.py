#!/usr/bin/env python
"""Training data path throughput: reid's uint8 store + batched on-device augmentation against a
conventional per-sample pipeline (PIL decode + per-image transforms in DataLoader workers), with
the same augmentations (upscale + random crop, flip, colour jitter, random erasing, normalise).

    python scripts/bench_data.py [--root ../shared/data/market1501-mini] [--sizes 256x128 384x128]
        [--batches 20] [--repeats 3] [--workers 2] [--device auto]

Uses the real Market-1501 images under ``--root`` when present, else the synthetic set. Each figure
is the best of ``--repeats`` timed runs of ``--batches`` batches (warm-up excluded; the image store is
built, or read from its cache, before timing), so it is robust to other load on the machine.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.config import load_config  # noqa: E402
from reid.data import build_dataset, build_train_loader  # noqa: E402
from reid.engine.host_memory import keep_freed_host_memory  # noqa: E402

JITTER = {"prob": 0.8, "brightness": 0.2, "contrast": 0.15, "saturation": 0.1, "hue": 0.05}
ERASING = {"prob": 0.5, "area": [0.02, 0.4], "aspect": 0.3, "fill": "mean"}
SCALE = 1.125
P, K = 16, 4


class PerSampleDataset(torch.utils.data.Dataset):
    """The conventional path: decode one JPEG with PIL and transform it alone."""

    def __init__(self, paths: list[str], size: tuple[int, int], mean, std):
        self.paths, (self.h, self.w) = paths, size
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng()
        img = Image.open(self.paths[i]).convert("RGB")
        bh, bw = round(self.h * SCALE), round(self.w * SCALE)
        img = img.resize((bw, bh), Image.BILINEAR)
        top, left = int(rng.integers(0, bh - self.h + 1)), int(rng.integers(0, bw - self.w + 1))
        img = img.crop((left, top, left + self.w, top + self.h))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if rng.random() < JITTER["prob"]:
            img = ImageEnhance.Brightness(img).enhance(rng.uniform(1 - JITTER["brightness"], 1 + JITTER["brightness"]))
            img = ImageEnhance.Contrast(img).enhance(rng.uniform(1 - JITTER["contrast"], 1 + JITTER["contrast"]))
            img = ImageEnhance.Color(img).enhance(rng.uniform(1 - JITTER["saturation"], 1 + JITTER["saturation"]))
            hsv = np.array(img.convert("HSV"))
            shift = int(round(rng.uniform(-JITTER["hue"], JITTER["hue"]) * 255))
            hsv[..., 0] = (hsv[..., 0].astype(np.int16) + shift) % 256
            img = Image.fromarray(hsv, "HSV").convert("RGB")
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div_(255)
        x = (x - self.mean) / self.std
        if rng.random() < ERASING["prob"]:  # random erasing (Zhong et al.), mean fill = 0 after norm
            for _ in range(10):
                area = self.h * self.w * rng.uniform(*ERASING["area"])
                ratio = math.exp(rng.uniform(math.log(ERASING["aspect"]), -math.log(ERASING["aspect"])))
                eh, ew = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
                if eh < self.h and ew < self.w:
                    y0, x0 = int(rng.integers(0, self.h - eh)), int(rng.integers(0, self.w - ew))
                    x[:, y0:y0 + eh, x0:x0 + ew] = 0.0
                    break
        return x


def best_rate(make_iter, batches: int, repeats: int, batch_size: int, sync) -> float:
    """Best images/s over ``repeats`` runs of ``batches`` batches (one warm-up batch each)."""
    best = 0.0
    for _ in range(repeats):
        it = make_iter()
        next(it)  # warm-up: worker start-up, first-touch allocations
        sync()
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        sync()
        best = max(best, batches * batch_size / (time.perf_counter() - t0))
    return best


def forever(loader):
    while True:
        yield from loader


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--root", default=str(ROOT.parent / "shared" / "data" / "market1501-mini"))
    ap.add_argument("--sizes", nargs="+", default=["256x128", "384x128"])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the per-sample path")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cache-dir", default=".cache/reid")
    args = ap.parse_args()

    heap = keep_freed_host_memory()  # what the trainer does on CPU; process-wide, so both paths share it
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    real = (Path(args.root) / "Market-1501-v15.09.15" / "bounding_box_train").is_dir()
    data = (["dataset.name=market1501", f"dataset.root={args.root}"] if real else
            ["dataset.name=synthetic", "dataset.num_ids=64", "dataset.images_per_id=16"])
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    print(f"device {device} ({torch.get_num_threads()} torch threads), data: "
          f"{'market1501-mini (real JPEGs)' if real else 'synthetic'}, batch {P}x{K}={P * K}, "
          f"best of {args.repeats} x {args.batches} batches; host malloc: {'heap (reid)' if heap else 'glibc default'}")
    rows = []
    for spec in args.sizes:
        h, w = (int(v) for v in spec.lower().split("x"))
        cfg = load_config(None, [
            *data, f"data.cache_dir={args.cache_dir}", f"input.size=[{h},{w}]", f"device={device}",
            "augment.crop=upscale", f"augment.crop_scale={SCALE}", "augment.flip_prob=0.5",
            "augment.color_jitter={" + ", ".join(f"{k}: {v}" for k, v in JITTER.items()) + "}",
            f"augment.erasing.prob={ERASING['prob']}", f"sampler.num_ids={P}", f"sampler.num_instances={K}",
        ])
        dataset = build_dataset(cfg, verbose=False)
        t0 = time.perf_counter()
        loader = build_train_loader(cfg, dataset, device)  # builds (or reads) the uint8 store
        store_s = time.perf_counter() - t0
        ours = best_rate(lambda loader=loader: forever(loader), args.batches, args.repeats, P * K, sync)

        per = PerSampleDataset([s.path for s in dataset.train], (h, w), cfg.input.pixel_mean, cfg.input.pixel_std)
        dl = torch.utils.data.DataLoader(per, batch_size=P * K, shuffle=True, num_workers=args.workers,
                                         drop_last=True, persistent_workers=args.workers > 0,
                                         pin_memory=device.type == "cuda")

        def conventional(dl=dl):
            for x in forever(dl):
                yield x.to(device, non_blocking=True)

        theirs = best_rate(conventional, args.batches, args.repeats, P * K, sync)
        rows.append((spec, ours, theirs, store_s))
        del dl

    per_sample = f"PIL per-sample ({args.workers} workers)"
    print(f"\n{'size':>9} | {'reid store+batched aug':>22} | {per_sample:>26} "
          f"| {'ratio':>6} | store ready (s)")
    print("-" * 88)
    for spec, ours, theirs, store_s in rows:
        print(f"{spec:>9} | {ours:>16.0f} img/s | {theirs:>20.0f} img/s | {ours / theirs:>5.1f}x | {store_s:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
