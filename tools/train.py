#!/usr/bin/env python
"""Train and evaluate a model from a YAML config.

    python tools/train.py --config configs/quickstart.yaml [--resume auto|PATH] [KEY=VALUE ...]
    python tools/train.py --config configs/laganet/market1501.yaml --summary
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid.cli import config_parser, run  # noqa: E402


def main() -> int:
    parser = config_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("--resume", metavar="PATH", help="checkpoint to resume from ('auto': the run's last.pth)")
    parser.add_argument("--summary", action="store_true", help="print the model and its parameter counts, then exit")
    parser.add_argument("--output-dir", help="output folder (same as output_dir=...)")
    args = parser.parse_args()
    overrides = list(args.overrides) + ([f"output_dir={args.output_dir}"] if args.output_dir else [])

    from reid.config import load_config

    cfg = load_config(args.config, overrides)
    if args.summary:
        from reid.data import build_dataset
        from reid.models import build_model, summary

        dataset = build_dataset(cfg)
        model = build_model(cfg.model, dataset.num_train_ids, input_size=cfg.input.size)
        print(summary(model))
        return 0
    from reid.engine.distributed import launch

    launch(cfg, resume=args.resume)
    return 0


if __name__ == "__main__":
    run(main)
