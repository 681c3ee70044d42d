#!/usr/bin/env python
"""Training throughput and cost: images/s, step-time breakdown (data, forward+loss, backward,
optimizer), FLOPs per step, achieved GFLOP/s against the device's measured fp32 matrix-product peak,
and peak memory, through the real Trainer (model, losses, optimiser, AMP, channels_last, compile)
on a synthetic data set. Default: BoT and LAGA-Net at 256x128 and 384x128; ``--models all`` takes
every network family at its config's own size (``--sizes config``).

    python scripts/bench_train.py [--models bot laganet | all] [--sizes 256x128 384x128 | config]
        [--ids 4 --instances 4] [--steps 5 --warmup 2 --repeats 2] [--device auto]
        [--amp off|bf16|fp16] [--channels-last] [--compile] [--pretrained]

CPU defaults to a small batch (4 x 4); on a GPU pass e.g. ``--ids 16 --instances 4`` (or larger).
Times are per step, the best of ``--repeats`` runs of ``--steps`` timed steps each (after
``--warmup`` steps), so they are robust to other load on the machine; CUDA work is synchronised at
each phase boundary. FLOPs (``torch.utils.flop_counter``: matrix products and convolutions, forward + backward) are
counted once per row, on the first warm-up step. Peak memory: what the steps add at their peak over
the model's weights (``torch.cuda.max_memory_allocated`` on GPU, peak RSS via ``VmHWM`` on CPU).
On CPU the freed heap is kept for reuse (``reid.engine.host_memory``), so a row's RSS figure is only
what it needs beyond what earlier rows left resident: for one network's own figure, run it alone
(or ``tools/train.py --config CONFIG --summary``, one process per config).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.config import load_config  # noqa: E402
from reid.engine import Trainer  # noqa: E402
from reid.engine.cost import FlopCount, PeakMemory, matmul_peak_gflops  # noqa: E402

FAMILIES = ("bot", "pcb", "mgn", "fusion", "laganet", "rganet", "lagnet", "bdb", "mmga")
CONFIGS = {name: f"configs/{name}/market1501.yaml" for name in FAMILIES}


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


def run_steps(t: Trainer, it, steps: int, flops: dict[str, int] | None = None) -> dict[str, float]:
    """Time ``steps`` training steps phase by phase (seconds summed over steps); with ``flops`` (a
    dict), the first step's forward and backward FLOPs are counted into it."""
    dev = t.device
    times = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    for i in range(steps):
        count = flops is not None and i == 0
        t0 = time.perf_counter()
        batch = next(it)
        if batch["images"].dtype != t.dtype:
            batch = {**batch, "images": batch["images"].to(t.dtype)}
        if t.cfg.train.channels_last:
            batch["images"] = batch["images"].contiguous(memory_format=torch.channels_last)
        sync(dev)
        t1 = time.perf_counter()
        with FlopCount() if count else nullcontext() as fwd, t._autocast():
            outputs = t.forward_model(batch["images"])
            total, _ = t.losses(outputs, batch)
        sync(dev)
        t2 = time.perf_counter()
        with FlopCount() if count else nullcontext() as bwd:
            t.optimizer.zero_grad(set_to_none=True)
            (t.scaler.scale(total) if t.scaler else total).backward()
        sync(dev)
        if count:
            flops.update(forward=fwd.total, backward=bwd.total)
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
    ap.add_argument("--models", nargs="+", default=["bot", "laganet"], choices=sorted(CONFIGS) + ["all"])
    ap.add_argument("--sizes", nargs="+", default=["256x128", "384x128"],
                    help="HxW sizes, or 'config' for each config's own input.size")
    ap.add_argument("--ids", default=None,
                    help="P (default: 4 on CPU, 16 on GPU; 'config': each config's own P and K)")
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
    if "all" in args.models:
        args.models = list(FAMILIES)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    own_batch = args.ids == "config"
    if args.ids is None:
        args.ids = 16 if device.type == "cuda" else 4
    elif not own_batch:
        args.ids = int(args.ids)
    batch = "each config's own" if own_batch else f"{args.ids}x{args.instances}={args.ids * args.instances}"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {device} ({name}), batch {batch}, amp {args.amp}, "
          f"channels_last {args.channels_last}, compile {args.compile}; "
          f"best of {args.repeats} x {args.steps} steps after {args.warmup} warm-up steps")
    peak_gflops = matmul_peak_gflops(device)
    print(f"device peak (measured): {peak_gflops:,.1f} GFLOP/s, one fp32 matrix product")
    table = [f"| model | size x batch | img/s | step ms | data | fwd | bwd | optim | fwd GFLOP | train GFLOP | "
             f"GFLOP/s | of peak | step peak {'GPU' if device.type == 'cuda' else 'RSS'} GiB |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for spec in args.sizes:
                own = load_config(ROOT / CONFIGS[model])
                if own_batch:
                    args.ids, args.instances = int(own.sampler.num_ids), int(own.sampler.num_instances)
                batch = args.ids * args.instances
                if spec == "config":
                    size = tuple(int(v) for v in own.input.size)
                    spec = f"{size[0]}x{size[1]}"
                size = tuple(int(v) for v in spec.lower().split("x"))
                try:
                    t = build(model, size, args, Path(tmp))
                except Exception as e:  # a model still being written must not stop the others
                    print(f"skipping {model} {spec}: it does not build ({type(e).__name__}: {e})")
                    traceback.print_exc(limit=1)
                    continue
                t.model.train()
                it = forever(t.loader)
                flops: dict[str, int] = {}
                with PeakMemory(device) as peak:
                    run_steps(t, it, max(args.warmup, 1), flops)
                    best = None
                    for _ in range(args.repeats):
                        times = run_steps(t, it, args.steps)
                        if best is None or sum(times.values()) < sum(best.values()):
                            best = times
                per = {k: 1000 * v / args.steps for k, v in best.items()}
                step_ms = sum(per.values())
                gflop = (flops["forward"] + flops["backward"]) / 1e9
                rate = gflop / step_ms * 1000
                table.append(f"| {model} | {spec} x {batch} | {batch * 1000 / step_ms:.1f} | {step_ms:.1f} | "
                             f"{per['data']:.1f} | {per['forward']:.1f} | {per['backward']:.1f} | "
                             f"{per['optimizer']:.1f} | {flops['forward'] / 1e9:,.1f} | {gflop:,.1f} | {rate:,.1f} | "
                             f"{rate / peak_gflops:.0%} | {(peak.bytes or 0) / 2**30:.2f} |")
                print(table[-1], flush=True)  # each row as it is measured: an interrupted run keeps them
                del t, it
    print("\n" + "\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
