#!/usr/bin/env python
"""Train a ladder of configs and write one Markdown table of rank-1/mAP per rung.

    python scripts/run_ablation.py configs/laganet/ablation/*.yaml --out ablation.md [KEY=VALUE ...]

Each rung trains with ``tools/train.py``'s trainer into ``<output-root>/<config name>``; overrides
apply to every rung (e.g. ``train.epochs=5 dataset.name=synthetic`` for a quick ladder). A rung
whose ``metrics.json`` already exists is read, not retrained (``--retrain`` forces it), so an
interrupted ladder resumes. The table puts each config's ``reference`` (the paper's numbers) beside
ours.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid.cli import run  # noqa: E402


def fmt(value: float | None, scale: float = 1.0) -> str:
    return "-" if value is None else f"{scale * value:.2f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| rung | config | rank-1 | mAP | mINP | paper rank-1 | paper mAP |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, r in enumerate(rows, 1):
        m = r["metrics"]
        lines.append(
            f"| {i} | {r['name']} | {fmt(m.get('rank1'), 100)} | {fmt(m.get('mAP'), 100)} | "
            f"{fmt(m.get('mINP'), 100)} | {fmt(r['reference'].get('rank1'))} | {fmt(r['reference'].get('mAP'))} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("configs", nargs="+", help="the ladder's configs, in order (then KEY=VALUE overrides)")
    parser.add_argument("--out", default="ablation.md", help="Markdown table to write")
    parser.add_argument("--output-root", default="outputs/ablation", help="one run folder per rung under it")
    parser.add_argument("--retrain", action="store_true", help="train rungs that already have metrics.json")
    args = parser.parse_intermixed_args()
    configs = [c for c in args.configs if "=" not in c]
    overrides = [c for c in args.configs if "=" in c]

    from reid.config import load_config
    from reid.engine.distributed import launch

    rows = []
    for path in configs:
        name = Path(path).stem
        out_dir = Path(args.output_root) / name
        cfg = load_config(path, overrides + [f"output_dir={out_dir}"])
        metrics_file = out_dir / "metrics.json"
        if args.retrain or not metrics_file.is_file():
            print(f"=> rung {len(rows) + 1}/{len(configs)}: {path}")
            launch(cfg)
        summary = json.loads(metrics_file.read_text())
        rows.append({"name": name, "metrics": summary["final"], "reference": dict(cfg.reference)})
        Path(args.out).write_text(table(rows))  # rewritten after every rung: nothing lost on a crash
    text = table(rows)
    print(text)
    print(f"=> wrote {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
