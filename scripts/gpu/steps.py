#!/usr/bin/env python
"""One training step and one evaluation pass of every network family at its Market-1501 config's
input size and P x K batch, per precision mode, with the peak memory beside the count
``scripts/bench_memory.py`` predicts (:func:`reid.engine.step_time.step_memory`).

    python scripts/gpu/steps.py [--device cuda] [--models all | bot laganet ...]
        [--modes fp32 bf16 bf16_cl compile] [--steps 3 --warmup 2] [--md steps.md]
        [--size HxW --ids P]   # tiny sizes for a dry run
        [--profile laganet]    # + the top kernels of one step

Modes: ``fp32`` (train.amp=off), ``bf16`` (bf16 autocast), ``bf16_cl`` (bf16 + channels_last),
``compile`` (bf16 + torch.compile; LAGA-Net only, at 384x128). Each row builds the network afresh
(random init, seed 0) and times ``--steps`` steps after ``--warmup`` ones, phase by phase with the
device synchronised at each boundary: forward + losses, backward, optimiser. Peak: the largest
``torch.cuda.max_memory_allocated`` from before the network is built to the last step (weights,
optimiser state and the step); predicted: step_memory's count of the same (tensor allocations
counted at P = 2 and 4, extended linearly), made on the same device (fp32 and bf16; bf16_cl and
compile show bf16's). Evaluation: eval-mode forward passes of ``test.batch_size`` random images
under the same precision (not for ``compile``: a second graph would be compiled). A row that fails
(out of memory, a compile error) prints its error and the others go on; the exit code is then 1.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from reid.config import load_config  # noqa: E402
from reid.engine.amp import autocast, backward  # noqa: E402
from reid.engine.step_time import TrainStep, random_batch, step_memory  # noqa: E402
from reid.models import build_model  # noqa: E402

FAMILIES = ("bot", "pcb", "mgn", "fusion", "laganet", "rganet", "lagnet", "bdb", "mmga")
MODES = {"fp32": ("off", False, False), "bf16": ("bf16", False, False), "bf16_cl": ("bf16", True, False),
         "compile": ("bf16", False, True)}
NUM_CLASSES = 751
GIB = 2**30


def config(name: str, mode: str, args) -> object:
    amp, cl, comp = MODES[mode]
    over = [f"device={args.device}", "model.backbone.pretrained=false", f"train.amp='{amp}'",
            f"train.channels_last={str(cl).lower()}", f"train.compile={str(comp).lower()}"]
    if args.size:
        h, w = (int(v) for v in args.size.lower().split("x"))
        over.append(f"input.size=[{h},{w}]")
    elif mode == "compile":
        over.append("input.size=[384,128]")
    if args.ids:
        over.append(f"sampler.num_ids={args.ids}")
    return load_config(ROOT / "configs" / name / "market1501.yaml", over + list(args.override))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fresh(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def measure(cfg, steps: int, warmup: int, evaluate: bool) -> dict:
    """Train-step phases (ms), images/s, peak bytes (CUDA), eval images/s of one fresh network."""
    torch.manual_seed(0)
    device = torch.device(str(cfg.device))
    fresh(device)
    train = TrainStep(cfg, build_model(cfg.model, NUM_CLASSES, input_size=cfg.input.size))
    if cfg.train.compile:
        train.model = torch.compile(train.model)
    batch = random_batch(cfg, device)
    if cfg.train.channels_last:
        batch["images"] = batch["images"].contiguous(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    for _ in range(warmup):
        train.step(batch)
    sync(device)
    warm_s = time.perf_counter() - t0
    phases = {"fwd": 0.0, "bwd": 0.0, "opt": 0.0}
    for _ in range(steps):
        t0 = time.perf_counter()
        total = train.forward(batch)
        sync(device)
        t1 = time.perf_counter()
        train.optimizer.zero_grad(set_to_none=True)
        backward(total, train.scaler)
        sync(device)
        t2 = time.perf_counter()
        train.update()
        sync(device)
        t3 = time.perf_counter()
        for k, (a, b) in zip(phases, ((t0, t1), (t1, t2), (t2, t3))):
            phases[k] += (b - a) * 1000 / steps
    n = int(batch["images"].shape[0])
    out = {**phases, "step": sum(phases.values()), "batch": n, "warm_s": warm_s,
           "img_s": n / (sum(phases.values()) / 1000),
           "peak": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None}
    if evaluate:
        model = train.model.eval()
        bs = int(cfg.test.batch_size)
        x = torch.randn(bs, 3, *[int(v) for v in cfg.input.size], device=device)
        if cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast(device, train.dtype):
            model(x)
            sync(device)
            t0 = time.perf_counter()
            reps = max(steps, 1)
            for _ in range(reps):
                model(x)
            sync(device)
        out["eval_img_s"] = bs * reps / (time.perf_counter() - t0)
        out["eval_bs"] = bs
    del train, batch
    fresh(device)
    return out


def predicted(cfg) -> int:
    """step_memory's total (weights + optimiser state + the step) for ``cfg``, counted on its device."""
    torch.manual_seed(0)
    model = build_model(cfg.model, NUM_CLASSES, input_size=cfg.input.size)
    total = int(step_memory(cfg, model)["total"])
    del model
    fresh(torch.device(str(cfg.device)))
    return total


def profile_step(cfg, rows: int = 15) -> str:
    """The top kernels (by their own device time; CPU ops by CPU time on the CPU) of one training step
    after two warm-up steps."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    device = torch.device(str(cfg.device))
    train = TrainStep(cfg, build_model(cfg.model, NUM_CLASSES, input_size=cfg.input.size))
    batch = random_batch(cfg, device)
    if cfg.train.channels_last:
        batch["images"] = batch["images"].contiguous(memory_format=torch.channels_last)
    for _ in range(2):
        train.step(batch)
    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        train.step(batch)
    del train, batch
    fresh(device)
    table = prof.key_averages()
    if not cuda:
        return table.table(sort_by="self_cpu_time_total", row_limit=rows)
    try:  # the key's name changed across torch versions
        return table.table(sort_by="self_device_time_total", row_limit=rows)
    except (AttributeError, KeyError, ValueError):
        return table.table(sort_by="self_cuda_time_total", row_limit=rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", nargs="+", default=["all"], choices=list(FAMILIES) + ["all"])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--size", help="HxW for every network (dry run; default each config's own)")
    ap.add_argument("--ids", type=int, help="P for every network (dry run; default each config's own)")
    ap.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for every network (a dry run: a small trunk, a small test batch)")
    ap.add_argument("--no-predict", action="store_true", help="skip the bench_memory count")
    ap.add_argument("--profile", choices=FAMILIES, metavar="NET",
                    help="also profile one step of NET (bf16 + channels_last, or --modes' first at --size): "
                         "its top kernels, printed after the table")
    ap.add_argument("--md", help="write the table here too (rewritten after every row)")
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 1:
        ap.error("--steps and --warmup must be >= 1")
    models = list(FAMILIES) if "all" in args.models else args.models
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer runs (the warm-up steps include its search)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    head = [f"device: {name}; torch {torch.__version__}; mean of {args.steps} steps after {args.warmup} warm-up "
            "steps (compile: the warm-up includes compiling); random init, random images", "",
            "| network | mode | size x batch | train img/s | step ms | fwd ms | bwd ms | optim ms | warm-up s "
            "| eval img/s (batch) | peak GiB | predicted GiB | peak / predicted |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    rows: list[str] = []
    failed = 0

    def write() -> None:
        if args.md:
            Path(args.md).write_text("\n".join(head + rows) + "\n")

    # compile last: its warm-up (compiling) is the longest, and a limit that cuts it keeps every other row
    jobs = [(net, mode) for net in models for mode in args.modes if mode != "compile"]
    jobs += [("laganet", "compile")] if "compile" in args.modes and "laganet" in models else []
    preds: dict[tuple[str, str], int | None] = {}
    for net, mode in jobs:
        try:
            cfg = config(net, mode, args)
            h, w = cfg.input.size
            r = measure(cfg, args.steps, args.warmup, evaluate=mode != "compile")
            key = (net, "fp32" if mode == "fp32" else "compile" if mode == "compile" else "bf16")
            if not args.no_predict and key not in preds:
                # compile's prediction: eager bf16 at the compile row's size
                preds[key] = predicted(cfg if mode == "compile" else config(net, key[1], args))
            p = preds.get(key)
            peak = f"{r['peak'] / GIB:.2f}" if r["peak"] is not None else "-"
            ratio = f"{r['peak'] / p:.2f}" if r["peak"] is not None and p else "-"
            ev = f"{r['eval_img_s']:.0f} ({r['eval_bs']})" if "eval_img_s" in r else "-"
            pred_s = f"{p / GIB:.2f}" if p else "-"
            rows.append(f"| {net} | {mode} | {h}x{w} x {r['batch']} | {r['img_s']:.0f} | {r['step']:.1f} | "
                        f"{r['fwd']:.1f} | {r['bwd']:.1f} | {r['opt']:.1f} | {r['warm_s']:.1f} | {ev} | {peak} | "
                        f"{pred_s} | {ratio} |")
        except Exception as exc:  # one failing row (OOM, compile error) must not stop the others
            failed += 1
            traceback.print_exc()
            rows.append(f"| {net} | {mode} | - | failed: {type(exc).__name__}: {str(exc)[:120]} "
                        "| | | | | | | | | |")
            fresh(device)
        print(rows[-1], flush=True)
        write()
    if args.profile:
        mode = "bf16_cl" if "bf16_cl" in args.modes else args.modes[0]
        try:
            cfg = config(args.profile, mode, args)
            text = profile_step(cfg)
            rows += ["", f"top kernels of one {args.profile} {mode} step at {cfg.input.size[0]}x{cfg.input.size[1]} "
                     f"x {int(cfg.sampler.num_ids) * int(cfg.sampler.num_instances)} (torch.profiler):", "",
                     "```", text.rstrip(), "```"]
        except Exception as exc:  # the profile is extra: its failure is reported, the table stands
            failed += 1
            traceback.print_exc()
            rows += ["", f"profile of {args.profile} failed: {type(exc).__name__}: {exc}"]
        write()
    print("\n".join(head + rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
