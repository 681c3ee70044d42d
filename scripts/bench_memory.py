#!/usr/bin/env python
"""Memory a training step needs, per network at its config's own batch and input size, and
whether it fits a given GPU; optionally with activation checkpointing (``train.checkpoint_modules``).

    python scripts/bench_memory.py [--models all | bot mgn ...] [--amp off|bf16] [--check]
        [--checkpoint-modules 'branches.*.stages' ...] [--fit-gib 8]

The figure is the tensors a step allocates (what ``torch.cuda.max_memory_allocated`` reports on a
GPU), counted exactly by :func:`reid.engine.step_time.step_memory`: weights, buffers and optimiser
state, plus the step's peak counted at two small batches and extended linearly to the config's P x K.
It does not depend on the machine's load, only on the network, the batch, the input size and the
precision, so a CPU run gives the GPU figure (before the CUDA context, cuDNN workspaces and the
caching allocator's rounding). ``--check`` also counts the step at a third batch (P = 8) and prints
the linear prediction beside it. ``--amp bf16`` counts under CPU bf16 autocast, as ``train.amp=auto``
trains on a GPU. Use ``OMP_NUM_THREADS=1`` on a shared machine: it takes about a minute per network.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.config import load_config  # noqa: E402
from reid.engine.step_time import TrainStep, counted_step, random_batch, step_memory  # noqa: E402
from reid.models import build_model  # noqa: E402
from reid.models.build import count  # noqa: E402

FAMILIES = ("bot", "pcb", "mgn", "fusion", "laganet", "rganet", "lagnet", "bdb", "mmga")
CONFIGS = {name: f"configs/{name}/market1501.yaml" for name in FAMILIES}
NUM_CLASSES = 751  # Market-1501's training identities: the classifier's size


def account(model: torch.nn.Module, cfg) -> str:
    """Forward GFLOP per image of each module two names deep (e.g. ``backbone.layer1``,
    ``rga.layer1``), counted on two training-mode images, largest first."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, 3, *[int(v) for v in cfg.input.size])
    model.train()
    with FlopCounterMode(display=False, depth=4) as counter:
        model(x)
    root = type(model).__name__
    rows = []
    for name, ops in counter.get_flop_counts().items():
        parts = name.split(".")
        if parts[0] == root and len(parts) in (2, 3):
            rows.append((sum(ops.values()) / 2 / 1e9, ".".join(parts[1:])))
    total = sum(counter.get_flop_counts()["Global"].values()) / 2 / 1e9
    lines = [f"forward GFLOP per image by module ({total:.2f} in all):"]
    lines += [f"  {name:<32} {g:8.3f}  {g / total:6.1%}" for g, name in sorted(rows, reverse=True) if g >= 0.01 * total]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["all"], choices=sorted(CONFIGS) + ["all"])
    ap.add_argument("--amp", default="off", choices=["off", "bf16"])
    ap.add_argument("--check", action="store_true", help="count a third batch (P = 8) against the prediction")
    ap.add_argument("--checkpoint-modules", nargs="*", default=None, metavar="PATTERN",
                    help="train.checkpoint_modules for every network (module-name patterns)")
    ap.add_argument("--fit-gib", type=float, default=8.0, help="the memory budget the last column checks")
    ap.add_argument("--override", nargs="*", default=[], help="extra config overrides for every network")
    ap.add_argument("--account", action="store_true",
                    help="also print each module's forward GFLOP per image (modules two names deep)")
    args = ap.parse_args()
    models = list(FAMILIES) if "all" in args.models else args.models
    print(f"CPU, {torch.get_num_threads()} threads; amp {args.amp}; tensor allocations counted by the profiler; "
          f"batch and input size from each config")
    rows = ["| network | size x batch | parameters | weights + optimiser GiB | per image MiB | step GiB | "
            f"total GiB | fits {args.fit_gib:g} GiB |" + (" check: P=8 counted / predicted |" if args.check else ""),
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |" + (" ---: |" if args.check else "")]
    for name in models:
        overrides = ["device=cpu", "model.backbone.pretrained=false", f"train.amp='{args.amp}'", *args.override]
        if args.checkpoint_modules is not None:
            quoted = ",".join(f"'{p}'" for p in args.checkpoint_modules)
            overrides.append(f"train.checkpoint_modules=[{quoted}]")
        cfg = load_config(ROOT / CONFIGS[name], overrides)
        start = time.perf_counter()
        model = build_model(cfg.model, NUM_CLASSES, input_size=cfg.input.size)
        params = count(model.parameters())[0]
        if args.account:
            print(account(model, cfg))
        m = step_memory(cfg, model)
        check = ""
        if args.check:
            train = TrainStep(cfg, model)
            train.step(random_batch(cfg, train.device, num_ids=2))
            first, kept, update = counted_step(train, random_batch(cfg, train.device, num_ids=8))
            b = 8 * int(cfg.sampler.num_instances)
            predicted = max(m["backward_fixed"] + m["per_image"] * b, m["update"])
            check = f" {max(first, kept + update) / 2**30:.3f} / {predicted / 2**30:.3f} |"
        h, w = cfg.input.size
        gib = 2**30
        rows.append(f"| {name} | {h}x{w} x {m['batch']} | {params / 1e6:.1f} M | {m['resident'] / gib:.2f} | "
                    f"{m['per_image'] / 2**20:.1f} | {m['step'] / gib:.2f} | {m['total'] / gib:.2f} | "
                    f"{'yes' if m['total'] <= args.fit_gib * gib else 'no'} |{check}")
        print(rows[-1], f"({time.perf_counter() - start:.0f} s)", flush=True)
    print("\n" + "\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
