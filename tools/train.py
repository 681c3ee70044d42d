#!/usr/bin/env python
"""Train and evaluate a model from a YAML config.

    python tools/train.py --config configs/quickstart.yaml [--resume auto|PATH | --overwrite] [--force] [KEY=VALUE ...]
    python tools/train.py --config configs/laganet/market1501.yaml --summary
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid.cli import config_parser, nonneg_int, run  # noqa: E402


def main() -> int:
    parser = config_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("--resume", metavar="PATH", help="checkpoint to resume from ('auto': the run's last.pth)")
    parser.add_argument("--summary", action="store_true",
                        help="print the model, its parameter counts, the batches per epoch and iterations of the run "
                             "and the time of one training step, then exit")
    parser.add_argument("--summary-steps", type=nonneg_int, default=2, metavar="N",
                        help="training steps timed by --summary (mean after one warm-up step; 0: no timing)")
    parser.add_argument("--output-dir", help="output folder (same as output_dir=...)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run in an output folder that holds a previous one: the previous run is "
                             "moved aside to a dated sibling folder (OUTPUT_DIR.old-YYYYmmdd-HHMMSS), never deleted")
    parser.add_argument("--force", action="store_true",
                        help="train even when another live run holds the output folder's lock (run.lock)")
    args = parser.parse_args()
    overrides = list(args.overrides) + ([f"output_dir={args.output_dir}"] if args.output_dir else [])

    from reid.config import load_config

    cfg = load_config(args.config, overrides)
    if args.summary:
        from reid.data import train_identities
        from reid.engine.step_time import (
            format_step_memory,
            format_step_time,
            format_training_length,
            step_memory,
            time_train_step,
            training_length,
        )
        from reid.models import build_model, summary

        backbone = cfg.model.get("backbone") if hasattr(cfg.model, "get") else None
        if isinstance(backbone, Mapping) and backbone.get("pretrained"):  # weights change neither counts nor time
            cfg = load_config(args.config, overrides + ["model.backbone.pretrained=false"])
        num_classes, source = train_identities(cfg)
        print(f"classifier: {num_classes} training identities ({source})")
        print(format_training_length(cfg, training_length(cfg)))
        model = build_model(cfg.model, num_classes, input_size=cfg.input.size)
        print(summary(model))
        if args.summary_steps > 0:
            print(format_step_time(time_train_step(cfg, model, steps=args.summary_steps)))
            print(format_step_memory(step_memory(cfg, model)))
        return 0
    from reid.engine.distributed import launch

    launch(cfg, resume=args.resume, force=args.force, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    run(main)
