#!/usr/bin/env python
"""Evaluate a checkpoint on a config's test protocol.

    python tools/test.py --checkpoint PATH [--config CFG] [--flip] [--rerank] [--aqe] [KEY=VALUE ...]

The config is the one stored in the checkpoint (input size, normalisation, data set, test options)
unless ``--config`` names another; ``KEY=VALUE`` overrides amend either. Paths are never taken from a
checkpoint: ``dataset.root`` and ``data.cache_dir`` come from the command line (or ``--config``), else
their defaults (docs/checks.md, "A checkpoint is data"). Cross-domain (a Market
model tested on Duke): ``--checkpoint market/checkpoints/best.pth dataset.name=dukemtmcreid
dataset.root=DIR`` keeps the trained model's input settings; the classifier's size never matters.

Prints rank-1/5/10, mAP and mINP, and writes ``test_metrics.json`` plus per-query results (AP and
rank of the first true match of every query) to ``--output-dir`` (default: the checkpoint's run
folder).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid.cli import config_parser, nonneg_int, run  # noqa: E402


def default_output_dir(checkpoint: Path) -> Path:
    """``run/checkpoints/best.pth`` -> ``run``; any other file -> its folder."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def main() -> int:
    parser = config_parser(__doc__.strip().splitlines()[0], config_required=False)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by tools/train.py")
    parser.add_argument("--flip", action="store_true", help="average features with the mirrored image")
    parser.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (Zhong et al.)")
    parser.add_argument("--aqe", action="store_true", help="alpha query expansion")
    parser.add_argument("--output-dir", help="where to write test_metrics.json and per-query results")
    parser.add_argument("--save-ranks", type=nonneg_int, default=0, metavar="N",
                        help="also save ranked_lists.png: top-10 gallery images of N queries")
    args = parser.parse_args()
    overrides = list(args.overrides)
    overrides += ["test.flip=true"] if args.flip else []
    overrides += ["test.rerank=true"] if args.rerank else []
    overrides += ["test.aqe=true"] if args.aqe else []

    from reid.atomic_io import atomic_write_text, check_apart, make_folder
    from reid.data import build_dataset
    from reid.engine import Evaluator, format_metrics, load_checkpoint, resolve_device
    from reid.engine.guards import check_folder
    from reid.inference.loading import build_from_checkpoint, checkpoint_config
    from reid.visualize.ranked_list import ranked_list_figure

    checkpoint = Path(args.checkpoint)
    out = Path(args.output_dir) if args.output_dir else default_output_dir(checkpoint)
    check_folder(out, "--output-dir")  # before any work
    check_apart([("--output-dir", out / name) for name in ("test_metrics.json", "per_query.csv", "ranked_lists.png")],
                {"--checkpoint": checkpoint, "--config": args.config})
    state = load_checkpoint(checkpoint)
    cfg = checkpoint_config(state, checkpoint, args.config, overrides)
    device = resolve_device(cfg.device)
    dataset = build_dataset(cfg)
    print(dataset.summary())
    model = build_from_checkpoint(state, cfg, checkpoint, fallback_classes=dataset.num_train_ids)
    model.to(device)
    evaluator = Evaluator(cfg, dataset, device)
    metrics, per_query = evaluator.evaluate(model, per_query=True)
    print(format_metrics(metrics, "test"))

    make_folder(out, "--output-dir")
    atomic_write_text(out / "test_metrics.json", json.dumps(
        {"checkpoint": str(checkpoint), "config": str(args.config or "stored in the checkpoint"), "flip": cfg.test.flip,
         "rerank": cfg.test.rerank, "aqe": cfg.test.aqe, "metrics": metrics}, indent=2))
    for i, table in enumerate(per_query):
        name = "per_query.csv" if len(per_query) == 1 else f"per_query_draw{i}.csv"
        atomic_write_text(out / name, table)
    if args.save_ranks:
        print(f"=> wrote {ranked_list_figure(evaluator, str(out / 'ranked_lists.png'), args.save_ranks)}")
    print(f"=> wrote {out / 'test_metrics.json'} and per-query results")
    return 0


if __name__ == "__main__":
    run(main)
