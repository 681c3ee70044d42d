#!/usr/bin/env python
"""Train a ladder of configs and write one Markdown table of rank-1/mAP and step time per rung.

    python scripts/run_ablation.py configs/laganet/ablation/*.yaml --out ablation.md [KEY=VALUE ...]

Each rung trains with ``tools/train.py``'s trainer into ``<output-root>/<config name>``; overrides
apply to every rung (e.g. ``train.epochs=5 dataset.name=synthetic`` for a quick ladder). A rung
whose ``metrics.json`` already exists is read, not retrained (``--retrain`` forces it), so an
interrupted ladder resumes. The table puts each config's ``reference`` (the paper's numbers for the
data set the rung runs on, see ``reid.config.reference_for``) beside ours. A rung trained with
``train.select_on: val`` reports the test metrics of the checkpoint picked on validation.

Before training, every rung's training step is timed the same way (``tools/train.py --summary``'s
timer: ``--time-steps`` steps after one warm-up, on a random P x K batch at ``input.size``, on
``device``); the table shows the seconds and the time relative to the first rung, beside the
paper's relative time (``reference.step_time``, where the paper reports one).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid.cli import run  # noqa: E402


def fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{scale * value:.{digits}f}"


def ratio(value: float | None, first: float | None) -> float | None:
    return None if value is None or not first else value / first


def table(rows: list[dict]) -> str:
    """Rows {name, metrics, reference {rank1, mAP}, seconds, paper_seconds} -> Markdown."""
    lines = [
        "| rung | config | rank-1 | mAP | mINP | paper rank-1 | paper mAP | step s | rel. time | paper rel. time |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    first = rows[0] if rows else {}
    for i, r in enumerate(rows, 1):
        m, ref = r["metrics"], r["reference"]
        rel = ratio(r.get("seconds"), first.get("seconds"))
        paper_rel = ratio(r.get("paper_seconds"), first.get("paper_seconds"))
        lines.append(
            f"| {i} | {r['name']} | {fmt(m.get('rank1'), 100)} | {fmt(m.get('mAP'), 100)} | "
            f"{fmt(m.get('mINP'), 100)} | {fmt(ref.get('rank1'))} | {fmt(ref.get('mAP'))} | "
            f"{fmt(r.get('seconds'), digits=3)} | {fmt(rel)} | {fmt(paper_rel)} |"
        )
    return "\n".join(lines) + "\n"


def reported_metrics(summary: dict) -> dict:
    """The test metrics a rung reports: of the checkpoint selected on validation when the run
    selected on validation (``train.select_on: val``), else of the final model."""
    best = summary.get("best") or {}
    if best.get("selected_on") == "val":
        return {k: v for k, v in best.items() if k not in ("epoch", "val", "score", "selected_on")}
    return summary["final"]


def step_seconds(path: str, overrides: list[str], steps: int) -> tuple[float, str]:
    """(seconds per training step of the rung's network, device), timed as ``--summary`` does."""
    import torch

    from reid.config import load_config
    from reid.data import train_identities
    from reid.engine.step_time import time_train_step
    from reid.models import build_model

    cfg = load_config(path, overrides)
    backbone = cfg.model.get("backbone")
    if isinstance(backbone, Mapping) and backbone.get("pretrained"):  # weights change no timing
        cfg = load_config(path, overrides + ["model.backbone.pretrained=false"])
    num_classes, _ = train_identities(cfg)
    model = build_model(cfg.model, num_classes, input_size=cfg.input.size)
    timed = time_train_step(cfg, model, steps=steps)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return float(timed["seconds"]), str(timed["device"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("configs", nargs="+", help="the ladder's configs, in order (then KEY=VALUE overrides)")
    parser.add_argument("--out", default="ablation.md", help="Markdown table to write")
    parser.add_argument("--output-root", default="outputs/ablation", help="one run folder per rung under it")
    parser.add_argument("--retrain", action="store_true", help="train rungs that already have metrics.json")
    parser.add_argument("--time-steps", type=int, default=3, metavar="N",
                        help="training steps timed per rung (mean after one warm-up; 0: no timing)")
    args = parser.parse_intermixed_args()
    configs = [c for c in args.configs if "=" not in c]
    overrides = [c for c in args.configs if "=" in c]

    from reid.config import load_config, reference_for
    from reid.engine.distributed import launch

    rungs = []
    for path in configs:
        name = Path(path).stem
        out_dir = Path(args.output_root) / name
        rungs.append((path, name, out_dir, load_config(path, overrides + [f"output_dir={out_dir}"])))
    seconds: dict[str, float] = {}
    device = ""
    if args.time_steps > 0:  # all rungs first, under the same conditions, before any training
        for i, (path, name, _, _) in enumerate(rungs, 1):
            seconds[name], device = step_seconds(path, overrides, args.time_steps)
            print(f"=> rung {i}/{len(rungs)} {name}: {seconds[name]:.3f} s per training step")
    rows = []
    for path, name, out_dir, cfg in rungs:
        metrics_file = out_dir / "metrics.json"
        if args.retrain or not metrics_file.is_file():
            print(f"=> rung {len(rows) + 1}/{len(configs)}: {path}")
            launch(cfg, overwrite=True)  # a previous (partial) run there is moved aside, never replaced
        summary = json.loads(metrics_file.read_text())
        best = summary.get("best") or {}
        label = f"{name} (selected on val: epoch {best['epoch']})" if best.get("selected_on") == "val" else name
        rows.append({"name": label, "metrics": reported_metrics(summary), "reference": reference_for(cfg),
                     "seconds": seconds.get(name), "paper_seconds": cfg.reference.step_time})
        Path(args.out).write_text(table(rows))  # rewritten after every rung: nothing lost on a crash
    text = table(rows)
    if seconds:
        text += (f"\nstep s: mean of {args.time_steps} training steps after one warm-up (random batch of the "
                 f"rung's P x K at input.size, {device}); rel. time: divided by rung 1's; paper rel. time: "
                 "the paper's time per batch (reference.step_time) divided by rung 1's.\n")
    Path(args.out).write_text(text)
    print(text)
    print(f"=> wrote {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
