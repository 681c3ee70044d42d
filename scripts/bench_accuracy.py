#!/usr/bin/env python
"""Real-image accuracy: train configs on the real Market-1501 mini benchmark and print rank-1, mAP,
mINP and wall time per run, from ImageNet weights and (``--random-init``) from random init
(``model.backbone.pretrained=false``, ``weights=null``).

    python scripts/bench_accuracy.py                                   # BoT-MobileNetV2, ImageNet init
    python scripts/bench_accuracy.py --random-init                     # ... and the same from random init
    python scripts/bench_accuracy.py configs/mobilenetv2/laganet_ladder/*.yaml   # the LAGA-Net ladder (GPU)
    python scripts/bench_accuracy.py ... --out accuracy.md [KEY=VALUE ...]

Each run trains through the trainer into ``<output-root>/<config name>[_random_init]`` and evaluates
before and after training. A run whose ``bench.json`` exists is read, not retrained (``--retrain``
forces it), so an interrupted benchmark resumes; the table is rewritten after every run. The
ImageNet MobileNetV2 weights must be in place (``python scripts/fetch_mobilenetv2_weights.py``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.cli import run  # noqa: E402

DEFAULT = "configs/mobilenetv2/bot_market1501_mini.yaml"


def pct(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    return "-" if value is None else f"{100 * value:.1f}"


def table(rows: list[dict], device: str) -> str:
    lines = [f"Market-1501 mini (376 train ids; 1,650 queries, 4,746 gallery), device: {device}", "",
             "| run | init | epochs | size | before R1 / mAP | R1 | R5 | mAP | mINP | wall min | img/s (wall) |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        b, f = r["before"] or {}, r["final"]
        lines.append(
            f"| {r['name']} | {r['init']} | {r['epochs']} | {r['size']} | {pct(b, 'rank1')} / {pct(b, 'mAP')} | "
            f"{pct(f, 'rank1')} | {pct(f, 'rank5')} | {pct(f, 'mAP')} | {pct(f, 'mINP')} | "
            f"{r['wall_s'] / 60:.1f} | {r['images_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def train_one(cfg, out_dir: Path) -> dict:
    """Train + evaluate ``cfg``; returns its bench record (also written to ``out_dir/bench.json``)."""
    from reid.engine import Trainer

    start = time.perf_counter()
    trainer = Trainer(cfg)
    summary = trainer.fit()
    wall = time.perf_counter() - start
    iters = len(trainer.loader)
    if cfg.train.iters_per_epoch:
        iters = min(iters, int(cfg.train.iters_per_epoch))
    seen = iters * int(cfg.sampler.num_ids) * int(cfg.sampler.num_instances) * int(cfg.train.epochs)
    record = {"before": summary.get("before"), "final": summary["final"], "wall_s": wall,
              "images_per_s": seen / wall}
    (out_dir / "bench.json").write_text(json.dumps(record, indent=2))
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("configs", nargs="*", help=f"configs to run (default {DEFAULT}), then KEY=VALUE overrides")
    parser.add_argument("--random-init", action="store_true",
                        help="also train each config from random init (model.backbone.pretrained=false)")
    parser.add_argument("--out", default="accuracy.md", help="Markdown table to write")
    parser.add_argument("--output-root", default="outputs/bench_accuracy", help="one run folder per run under it")
    parser.add_argument("--retrain", action="store_true", help="train runs that already have bench.json")
    args = parser.parse_intermixed_args()
    configs = [c for c in args.configs if "=" not in c] or [DEFAULT]
    overrides = [c for c in args.configs if "=" in c]

    from reid.config import load_config
    from reid.engine.trainer import resolve_device

    runs = [(path, False) for path in configs] + ([(path, True) for path in configs] if args.random_init else [])
    rows: list[dict] = []
    device = ""
    for i, (path, random_init) in enumerate(runs, 1):
        name = Path(path).stem + ("_random_init" if random_init else "")
        out_dir = Path(args.output_root) / name
        extra = ["model.backbone.pretrained=false", "model.backbone.weights=null"] if random_init else []
        cfg = load_config(path, overrides + extra + [f"output_dir={out_dir}"])
        dev = resolve_device(cfg.device)
        device = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
        bench = out_dir / "bench.json"
        if args.retrain or not bench.is_file():
            print(f"=> run {i}/{len(runs)}: {path}{' (random init)' if random_init else ''} -> {out_dir}", flush=True)
            record = train_one(cfg, out_dir)
        else:
            record = json.loads(bench.read_text())
        backbone = cfg.model.get("backbone") or {}
        pretrained = bool(backbone.get("pretrained") or backbone.get("weights"))
        rows.append({"name": Path(path).stem, "init": "ImageNet" if pretrained else "random",
                     "epochs": int(cfg.train.epochs), "size": "x".join(str(v) for v in cfg.input.size), **record})
        Path(args.out).write_text(table(rows, device))  # rewritten after every run: nothing lost on a crash
    print(table(rows, device))
    print(f"=> wrote {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
