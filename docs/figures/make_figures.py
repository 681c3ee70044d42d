#!/usr/bin/env python
"""Regenerate the figures of docs/figures/ (README "Visualising") with tools/visualize.py.

    python docs/figures/make_figures.py --runs RUN_A RUN_B --names NAME_A NAME_B [--laganet-run RUN_L]
        [--out docs/figures]

RUN_A / RUN_B: the two runs the ranked lists, CMC curves and per-query rows compare (the committed
figures: BoT-MobileNetV2 on the real Market-1501 mini set from ImageNet weights and from random
init, scripts/bench_accuracy.py --random-init; docs/figures/README.md); the training curves are
RUN_A's. RUN_L: a LAGA-Net run whose SAM-RPE attention is drawn; with it, also the attention grids of
RGA-Net, MMGA and LAG-Net as random-init ResNet-18 networks at 64x32 (no trained run of theirs).
Without it the attention figures are left as they are. The commands are the ones a user types; they
run in one process so that each checkpoint is evaluated once.
"""
from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DATA_ROOT = ROOT.parent / "shared" / "data" / "market1501-mini"
MINI = DATA_ROOT / "Market-1501-v15.09.15"
QUERIES = ["0007_c1s6_028546_04.jpg", "0299_c4s5_007429_01.jpg", "0788_c6s2_106643_01.jpg"]


def random_init_checkpoint(name: str, folder: Path) -> Path:
    """A random-init ResNet-18 ``name`` at 64x32 saved as tools/train.py saves checkpoints."""
    import torch

    from reid.config import load_config
    from reid.engine.checkpoint import save_checkpoint, to_plain
    from reid.models import build_model

    extra = ["model.num_parts=8"] if name == "lagnet" else []
    cfg = load_config(ROOT / "configs" / "quickstart.yaml", [f"model.name={name}", *extra])
    torch.manual_seed(0)
    model = build_model(cfg.model, 10, input_size=cfg.input.size)
    path = folder / f"{name}_random_init.pth"
    save_checkpoint({"model": model.state_dict(), "config": to_plain(cfg.to_dict()), "num_classes": 10}, path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--runs", nargs=2, required=True, metavar="RUN", help="the two runs compared")
    ap.add_argument("--names", nargs=2, required=True, metavar="NAME", help="their names in the figures")
    ap.add_argument("--laganet-run", help="a LAGA-Net run for the attention figures (else they are kept)")
    ap.add_argument("--data-root", default=str(DATA_ROOT),
                    help="dataset.root of the runs' data set (a checkpoint stores no path; default: the mini set)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "figures"))
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("visualize", ROOT / "tools" / "visualize.py")
    vis = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vis)
    out = Path(args.out)
    images = [str(MINI / "query" / q) for q in QUERIES]
    runs, names, data = args.runs, args.names, f"dataset.root={args.data_root}"
    commands = [
        ["curves", "--run", runs[0], "--out", f"{out}/curves.png"],
        ["cmc", "--runs", *runs, "--names", *names, "--evaluate", "--out", f"{out}/cmc.png", data],
        ["ranked", "--checkpoints", *runs, "--names", *names, "--queries", "4", "--topk", "8",
         "--out", f"{out}/ranked.png", data],
        ["per-dataset", "--runs", *runs, "--names", *names, "--topk", "8", "--out", f"{out}/per_dataset.png", data],
    ]
    if args.laganet_run:
        commands.append(["attention", "--checkpoint", f"{args.laganet_run}/checkpoints/best.pth", "--images", *images,
                         "--query-positions", "0.3,0.5", "0.75,0.5", "--out", f"{out}/attention_laganet.png"])
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("rganet", "mmga", "lagnet") if args.laganet_run else ():
            commands.append(["attention", "--checkpoint", str(random_init_checkpoint(name, Path(tmp))),
                             "--images", *images[:2], "--out", f"{out}/attention_{name}_random_init.png"])
        for argv in commands:
            print("$ python tools/visualize.py " + shlex.join(argv), flush=True)
            vis.main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
