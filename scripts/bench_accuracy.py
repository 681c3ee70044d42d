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

``--peer`` also trains each BoT-MobileNetV2 run with torchreid (``scripts/peer_torchreid.py``, run by
the peer environment's Python, ``--peer-python``; default ``$REID_PEER_PYTHON``, else
``../peer-venv/bin/python`` beside the project's root) into ``<run folder>_torchreid`` and prints
both rows; the peer's features are also scored by reid's evaluator (mINP, and a check that the two
evaluators agree). The peer environment is separate from reid's, outside the repository; ``--help``
prints how to create it (``PEER_SETUP``).

Each side's wall time runs from loading the data set to the end of the final evaluation (with the
evaluation before training when ``train.eval_before``); the 1-minute load averages at its start and
end are printed beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.cli import run  # noqa: E402
from reid.registry import UserError  # noqa: E402

DEFAULT = "configs/mobilenetv2/bot_market1501_mini.yaml"
PEER_SCRIPT = ROOT / "scripts" / "peer_torchreid.py"
DEFAULT_PEER_PYTHON = ROOT.parent / "peer-venv" / "bin" / "python"
PEER_SETUP = """\
peer environment (torchreid 1.4.0 from KaiyangZhou/deep-person-reid, commit f8cd150; the PyPI name
'torchreid' is a different, repackaged 0.2.5), created outside the repository, e.g. beside it:
  python3 -m venv ../peer-venv
  ../peer-venv/bin/pip install torch==2.14.1 torchvision==0.29.1
  ../peer-venv/bin/pip install numpy Cython scipy Pillow tensorboard gdown opencv-python-headless h5py imageio six
  git clone https://github.com/KaiyangZhou/deep-person-reid /tmp/deep-person-reid
  ../peer-venv/bin/pip install --no-deps --no-build-isolation /tmp/deep-person-reid
then pass --peer-python ../peer-venv/bin/python (the default) or set REID_PEER_PYTHON."""


def pct(metrics: dict | None, key: str) -> str:
    value = (metrics or {}).get(key)
    return "-" if value is None else f"{100 * value:.1f}"


def rate(images_per_s: float) -> str:
    """Images per second: whole numbers from 10 up, two significant digits below (a starved run's 0.3
    must not print as 0)."""
    return f"{images_per_s:.0f}" if images_per_s >= 10 else f"{images_per_s:.2g}"


def load_pair(r: dict) -> str:
    """'start / end' 1-minute load averages of a run ('-' for records written before they were kept)."""
    if not r.get("load_start") or not r.get("load_end"):
        return "-"
    return f"{r['load_start'][0]:.2f} / {r['load_end'][0]:.2f}"


def table(rows: list[dict], device: str) -> str:
    lines = [f"Market-1501 mini (376 train ids; 1,650 queries, 4,746 gallery), device: {device}", "",
             "| run | framework | init | epochs | size | iters | before R1 / mAP | R1 | R5 | mAP | mINP | wall min "
             "| img/s (wall) | load start / end |",
             "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        b, f = r["before"], r["final"]
        lines.append(
            f"| {r['name']} | {r.get('framework', 'reid')} | {r['init']} | {r['epochs']} | {r['size']} | "
            f"{r.get('iterations', '-')} | {pct(b, 'rank1')} / {pct(b, 'mAP')} | {pct(f, 'rank1')} | "
            f"{pct(f, 'rank5')} | {pct(f, 'mAP')} | {pct(f, 'mINP')} | {r['wall_s'] / 60:.1f} | "
            f"{rate(r['images_per_s'])} | {load_pair(r)} |")
    peers = [r for r in rows if "reid_eval" in r]
    if peers:
        lines.append("")
        lines.append("torchreid has no mINP: a torchreid row's mINP is reid's evaluator on its saved features. "
                     "Those features scored by reid's evaluator (R1 / R5 / mAP / mINP):")
        for r in peers:
            e = r["reid_eval"]
            lines.append(f"- {r['name']} ({r['init']}): {pct(e, 'rank1')} / {pct(e, 'rank5')} / {pct(e, 'mAP')} "
                         f"/ {pct(e, 'mINP')}")
    return "\n".join(lines) + "\n"


def train_one(cfg, out_dir: Path) -> dict:
    """Train + evaluate ``cfg``; returns its bench record (also written to ``out_dir/bench.json``)."""
    from reid.engine import Trainer

    load_start = os.getloadavg()
    start = time.perf_counter()
    trainer = Trainer(cfg, overwrite=True)  # a previous (partial) run there is moved aside, never replaced
    summary = trainer.fit()
    wall = time.perf_counter() - start
    iters = len(trainer.loader)
    if cfg.train.iters_per_epoch:
        iters = min(iters, int(cfg.train.iters_per_epoch))
    iterations = iters * int(cfg.train.epochs)
    seen = iterations * int(cfg.sampler.num_ids) * int(cfg.sampler.num_instances)
    record = {"framework": "reid", "before": summary.get("before"), "final": summary["final"], "wall_s": wall,
              "iterations": iterations, "images_per_s": seen / wall, "load_start": list(load_start),
              "load_end": list(os.getloadavg())}
    (out_dir / "bench.json").write_text(json.dumps(record, indent=2))
    return record


# ------------------------------------------------------------------------------------ the peer

def weights_file(backbone: dict) -> str | None:
    """The ImageNet file the reid run loads (None from random init)."""
    from reid.models.backbones.mobilenetv2 import default_weights_path

    if not (backbone.get("pretrained") or backbone.get("weights")):
        return None
    path = Path(backbone.get("weights") or os.environ.get("REID_MOBILENETV2_WEIGHTS") or default_weights_path())
    return str(path.resolve())


def peer_spec(cfg, device: str) -> dict:
    """What ``scripts/peer_torchreid.py`` needs from a BoT-MobileNetV2 config; a :class:`UserError`
    names each setting the peer cannot reproduce."""
    from reid.engine.schedule import lr_factor

    model, backbone = cfg.model, cfg.model.get("backbone") or {}
    losses = {spec["name"]: spec for spec in cfg.losses.values() if spec}
    ce, tri = losses.get("cross_entropy", {}), losses.get("triplet", {})
    aug, opt, test = cfg.augment, cfg.optimizer, cfg.test
    er, cj = aug.erasing, aug.color_jitter
    mean, std = [float(v) for v in cfg.input.pixel_mean], [float(v) for v in cfg.input.pixel_std]
    checks = {
        "dataset.name is market1501": cfg.dataset.name == "market1501",
        "model is BoT (avg pooling, BNNeck, test feature after the BN)": model.name == "bot"
        and model.get("pooling", "avg") == "avg" and model.get("neck", "bnneck") == "bnneck"
        and model.get("neck_feat", "after") == "after",
        "backbone is mobilenetv2": backbone.get("name") == "mobilenetv2",
        "losses are cross_entropy + triplet (euclidean, hinge, unnormalised)":
        set(losses) == {"cross_entropy", "triplet"} and tri.get("metric", "euclidean") == "euclidean"
        and not tri.get("soft_margin") and not tri.get("normalize"),
        "optimizer is adam without lr_mults, decay on every parameter": opt.name == "adam" and not opt.lr_mults
        and opt.bias_weight_decay and not opt.amsgrad,
        "augment.crop is upscale x1.125 (torchreid's fixed scale)": aug.crop == "upscale"
        and abs(float(aug.crop_scale) - 1.125) < 1e-9,
        "no colour jitter": float(cj.prob) == 0 or not any(float(cj[k]) for k in ("brightness", "contrast",
                                                                                  "saturation", "hue")),
        "augment.erasing.fill is mean or zero": er.fill in ("mean", "zero"),
        "test: no flip, rerank or aqe": not (test.flip or test.rerank or test.aqe),
        "train.dtype float32, train.iters_per_epoch 0 (full sampler passes)": cfg.train.dtype == "float32"
        and not cfg.train.iters_per_epoch,
    }
    failed = [what for what, ok in checks.items() if not ok]
    if failed:
        raise UserError("--peer trains BoT-MobileNetV2 only; this config needs: " + "; ".join(failed))
    epochs, lr = int(cfg.train.epochs), float(opt.lr)
    fill = [0.0, 0.0, 0.0] if er.fill == "mean" else [-m / s for m, s in zip(mean, std)]
    weights = weights_file(backbone)
    if weights and not Path(weights).is_file():
        raise UserError(f"MobileNetV2 ImageNet weights not found at {weights}: "
                        "python scripts/fetch_mobilenetv2_weights.py")
    return {
        "data_root": str(Path(cfg.dataset.root).expanduser().resolve()),
        "height": int(cfg.input.size[0]), "width": int(cfg.input.size[1]), "pixel_mean": mean, "pixel_std": std,
        "epochs": epochs, "num_ids": int(cfg.sampler.num_ids), "num_instances": int(cfg.sampler.num_instances),
        "lr": lr, "weight_decay": float(opt.weight_decay), "betas": [float(b) for b in opt.betas],
        "lr_factors": [lr_factor(e, cfg.schedule, lr, epochs) for e in range(epochs)],
        "margin": float(tri.get("margin", 0.3)), "epsilon": float(ce.get("epsilon", 0.1)),
        "ce_weight": float(ce.get("weight", 1.0)), "triplet_weight": float(tri.get("weight", 1.0)),
        "flip_prob": float(aug.flip_prob), "crop_prob": float(aug.crop_prob),
        "erasing": {"prob": float(er.prob), "area": [float(a) for a in er.area], "aspect": float(er.aspect),
                    "fill": fill},
        "weights": weights, "last_stride": int(backbone.get("last_stride", 2)),
        "seed": int(cfg.seed), "device": device, "eval_before": bool(cfg.train.eval_before),
        "test_batch_size": int(test.batch_size), "normalize": bool(test.normalize), "metric": test.metric,
        "max_rank": int(test.max_rank),
    }


def peer_python(arg: str | None) -> Path:
    """The peer environment's Python: ``arg``, else ``$REID_PEER_PYTHON``, else ``../peer-venv``."""
    path = Path(arg or os.environ.get("REID_PEER_PYTHON") or DEFAULT_PEER_PYTHON)
    if not path.is_file():
        raise UserError(f"no peer Python at {path}. Create the {PEER_SETUP}")
    return path


def score_peer_features(path: Path, cfg) -> dict:
    """reid's evaluator on the peer's saved features: rank-1/5/10, mAP, mINP."""
    from reid.evaluation import evaluate_features

    f = np.load(path)
    result = evaluate_features(torch.from_numpy(f["qf"]), torch.from_numpy(f["gf"]), f["q_pids"], f["g_pids"],
                               f["q_camids"], f["g_camids"], metric=cfg.test.metric, max_rank=int(cfg.test.max_rank))
    return result.summary((1, 5, 10))


def train_peer(cfg, out_dir: Path, python: Path, device: str, workers: int) -> dict:
    """Train ``cfg``'s network with torchreid in the peer environment; returns its bench record."""
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = out_dir / "spec.json"
    spec.write_text(json.dumps(peer_spec(cfg, device), indent=2))
    cmd = [str(python), str(PEER_SCRIPT), "--spec", str(spec), "--out", str(out_dir), "--workers", str(workers)]
    res = subprocess.run(cmd)
    if res.returncode != 0:
        raise UserError(f"the torchreid peer failed (exit {res.returncode}): {' '.join(cmd)}")
    record = json.loads((out_dir / "peer.json").read_text())
    record["reid_eval"] = score_peer_features(out_dir / "features.npz", cfg)
    record["final"]["mINP"] = record["reid_eval"]["mINP"]
    (out_dir / "bench.json").write_text(json.dumps(record, indent=2))
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0], epilog=PEER_SETUP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", help=f"configs to run (default {DEFAULT}), then KEY=VALUE overrides")
    parser.add_argument("--random-init", action="store_true",
                        help="also train each config from random init (model.backbone.pretrained=false)")
    parser.add_argument("--peer", action="store_true", help="also train each run with torchreid (BoT-MobileNetV2)")
    parser.add_argument("--peer-python", help=f"the peer environment's Python (default $REID_PEER_PYTHON, "
                        f"else {DEFAULT_PEER_PYTHON})")
    parser.add_argument("--peer-workers", type=int, default=2, help="torchreid's DataLoader workers")
    parser.add_argument("--out", default="accuracy.md", help="Markdown table to write")
    parser.add_argument("--output-root", default="outputs/bench_accuracy", help="one run folder per run under it")
    parser.add_argument("--retrain", action="store_true", help="train runs that already have bench.json")
    args = parser.parse_intermixed_args()
    configs = [c for c in args.configs if "=" not in c] or [DEFAULT]
    overrides = [c for c in args.configs if "=" in c]
    python = peer_python(args.peer_python) if args.peer else None

    from reid.config import load_config
    from reid.engine.device import resolve_device

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
        if python is not None:
            peer_spec(cfg, str(dev))  # an unsupported config fails before any training
        backbone = cfg.model.get("backbone") or {}
        pretrained = bool(backbone.get("pretrained") or backbone.get("weights"))
        meta = {"name": Path(path).stem, "init": "ImageNet" if pretrained else "random",
                "epochs": int(cfg.train.epochs), "size": "x".join(str(v) for v in cfg.input.size)}
        sides = [("reid", out_dir)] + ([("torchreid", Path(f"{out_dir}_torchreid"))] if python is not None else [])
        for side, side_dir in sides:
            bench = side_dir / "bench.json"
            if args.retrain or not bench.is_file():
                print(f"=> run {i}/{len(runs)} ({side}): {path}{' (random init)' if random_init else ''} -> "
                      f"{side_dir}; load average at start {os.getloadavg()}", flush=True)
                if side == "reid":
                    record = train_one(cfg, side_dir)
                else:
                    record = train_peer(cfg, side_dir, python, str(dev), args.peer_workers)
                print(f"=> {side} done in {record['wall_s'] / 60:.1f} min; load average at end "
                      f"{tuple(record['load_end'])}", flush=True)
            else:
                record = json.loads(bench.read_text())
            rows.append({**meta, **record})
            Path(args.out).write_text(table(rows, device))  # rewritten after every run: nothing lost on a crash
    print(table(rows, device))
    print(f"=> wrote {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
