#!/usr/bin/env python
"""Training throughput: images/s, step-time breakdown (data, forward+loss, backward, optimizer) and
peak memory, for BoT and LAGA-Net at 256x128 and 384x128, through the real Trainer (model, losses,
optimiser, AMP, channels_last, compile) on a synthetic data set.

    python scripts/bench_train.py [--models bot laganet] [--sizes 256x128 384x128]
        [--ids 4 --instances 4] [--steps 5 --warmup 2 --repeats 2] [--device auto]
        [--amp off|bf16|fp16] [--channels-last] [--compile] [--pretrained]

CPU defaults to a small batch (4 x 4); on a GPU pass e.g. ``--ids 16 --instances 4`` (or larger).
Times are per step, the best of ``--repeats`` runs of ``--steps`` timed steps each (after
``--warmup`` steps), so they are robust to other load on the machine; CUDA work is synchronised at
each phase boundary. Peak memory: ``torch.cuda.max_memory_allocated`` on GPU, the process's peak
RSS on CPU (cumulative over the run, so an upper bound for later rows).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.config import load_config  # noqa: E402
from reid.engine import Trainer  # noqa: E402

CONFIGS = {"bot": "configs/bot/market1501.yaml", "laganet": "configs/laganet/market1501.yaml"}


def build(model: str, size: tuple[int, int], args, tmp: Path) -> Trainer:
    overrides = [
        f"output_dir={tmp / model}", f"data.cache_dir={tmp / 'cache'}", f"device={args.device}",
        "dataset.name=synthetic", f"dataset.root={tmp / 'datasets'}",
        f"dataset.num_ids={max(2 * args.ids, 16)}", "dataset.num_test_ids=4", "dataset.images_per_id=8",
        f"input.size=[{size[0]},{size[1]}]", f"sampler.num_ids={args.ids}", f"sampler.num_instances={args.instances}",
        f"train.amp='{args.amp}'", f"train.channels_last={str(args.channels_last).lower()}",
        f"train.compile={str(args.compile).lower()}", "train.eval_before=false",
    ]
    if not args.pretrained:
        overrides.append("model.backbone.pretrained=false")
    return Trainer(load_config(ROOT / CONFIGS[model], overrides))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_steps(t: Trainer, it, steps: int) -> dict[str, float]:
    """Time ``steps`` training steps phase by phase (seconds summed over steps)."""
    dev = t.device
    times = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = next(it)
        if batch["images"].dtype != t.dtype:
            batch = {**batch, "images": batch["images"].to(t.dtype)}
        if t.cfg.train.channels_last:
            batch["images"] = batch["images"].contiguous(memory_format=torch.channels_last)
        sync(dev)
        t1 = time.perf_counter()
        with t._autocast():
            outputs = t.forward_model(batch["images"])
            total, _ = t.losses(outputs, batch)
        sync(dev)
        t2 = time.perf_counter()
        t.optimizer.zero_grad(set_to_none=True)
        (t.scaler.scale(total) if t.scaler else total).backward()
        sync(dev)
        t3 = time.perf_counter()
        if t.scaler:
            t.scaler.step(t.optimizer)
            t.scaler.update()
        else:
            t.optimizer.step()
        sync(dev)
        t4 = time.perf_counter()
        for k, a, b in (("data", t0, t1), ("forward", t1, t2), ("backward", t2, t3), ("optimizer", t3, t4)):
            times[k] += b - a
    return times


def forever(loader):
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["bot", "laganet"], choices=sorted(CONFIGS))
    ap.add_argument("--sizes", nargs="+", default=["256x128", "384x128"])
    ap.add_argument("--ids", type=int, default=None, help="P (default: 4 on CPU, 16 on GPU)")
    ap.add_argument("--instances", type=int, default=4, help="K")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", default="off", choices=["off", "bf16", "fp16", "auto"])
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--pretrained", action="store_true", help="load ImageNet weights (needs them available)")
    args = ap.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if args.ids is None:
        args.ids = 16 if device.type == "cuda" else 4
    batch = args.ids * args.instances
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {device} ({name}), batch {args.ids}x{args.instances}={batch}, amp {args.amp}, "
          f"channels_last {args.channels_last}, compile {args.compile}; "
          f"best of {args.repeats} x {args.steps} steps after {args.warmup} warm-up steps")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for spec in args.sizes:
                size = tuple(int(v) for v in spec.lower().split("x"))
                try:
                    t = build(model, size, args, Path(tmp))
                except Exception as e:  # a model still being written must not stop the others
                    print(f"skipping {model} {spec}: it does not build ({type(e).__name__}: {e})")
                    traceback.print_exc(limit=1)
                    continue
                t.model.train()
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                it = forever(t.loader)
                run_steps(t, it, args.warmup)
                best = None
                for _ in range(args.repeats):
                    times = run_steps(t, it, args.steps)
                    if best is None or sum(times.values()) < sum(best.values()):
                        best = times
                per = {k: 1000 * v / args.steps for k, v in best.items()}
                step_ms = sum(per.values())
                peak = (torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda"
                        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
                rows.append((model, spec, batch * 1000 / step_ms, step_ms, per, peak))
                del t, it
    print(f"\n{'model':>8} | {'size':>8} | {'img/s':>8} | {'step ms':>8} | {'data':>7} | {'fwd':>7} | "
          f"{'bwd':>7} | {'optim':>7} | peak {'GPU' if device.type == 'cuda' else 'RSS'} GiB")
    print("-" * 98)
    for model, spec, ips, step_ms, per, peak in rows:
        print(f"{model:>8} | {spec:>8} | {ips:>8.1f} | {step_ms:>8.1f} | {per['data']:>7.1f} | "
              f"{per['forward']:>7.1f} | {per['backward']:>7.1f} | {per['optimizer']:>7.1f} | {peak:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
