#!/usr/bin/env python
"""Export every network family to ONNX and TorchScript and check the files against PyTorch.

    OMP_NUM_THREADS=1 python scripts/export_every_family.py [--size 128 64] [--exporter auto|legacy|dynamo]

Each family's Market-1501 config (``configs/<family>/market1501.yaml``, plus MobileNetV2-BoT) is
built randomly initialised (ResNet-18 trunk unless ``--full-trunk``; 8 classes) at its own input
size (or ``--size``),
exported through :func:`reid.inference.export.export_model` and run on a batch of 3 (traced with 2):
onnxruntime and torch.jit against PyTorch. Prints one row per family and format: seconds to export,
max abs difference of the features, or the error.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from reid.config import load_config
from reid.inference.export import check_export, export_model
from reid.models import build_model

ROOT = Path(__file__).resolve().parents[1]
EXPORTERS = {"auto": None, "legacy": False, "dynamo": True}
FAMILIES = ("bot", "pcb", "mgn", "fusion", "laganet", "rganet", "lagnet", "bdb", "mmga")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=None, help="H W (default: each config's input.size)")
    parser.add_argument("--exporter", choices=("auto", "legacy", "dynamo"), default="auto",
                        help="ONNX: TorchScript-based with torch.export fallback (auto), or one of them")
    parser.add_argument("--full-trunk", action="store_true", help="keep each config's own backbone")
    parser.add_argument("--formats", nargs="+", default=["onnx", "torchscript"])
    args = parser.parse_args()
    configs = [ROOT / "configs" / f / "market1501.yaml" for f in FAMILIES]
    configs.append(ROOT / "configs" / "mobilenetv2" / "bot_market1501_mini.yaml")
    print(f"torch {torch.__version__}; input {args.size or 'of each config'}; ONNX exporter "
          f"{args.exporter}")
    print(f"{'config':<44} {'format':<12} {'export s':>8} {'max |diff|':>11}  D  (input)")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in configs:
            overrides = [f"input.size=[{args.size[0]},{args.size[1]}]"] if args.size else []
            if not args.full_trunk and "mobilenetv2" not in str(path):
                overrides.append("model.backbone={name: resnet18, last_stride: 1, pretrained: false}")
            else:
                overrides.append("model.backbone.pretrained=false")
            name = path.relative_to(ROOT / "configs").as_posix()
            try:
                cfg = load_config(path, overrides)
                torch.manual_seed(0)
                model = build_model(cfg.model, 8, input_size=cfg.input.size).eval()
            except Exception as exc:  # noqa: BLE001 - reported per family
                print(f"{name:<44} build failed: {str(exc).splitlines()[0]}")
                failures += 1
                continue
            for fmt in args.formats:
                out = Path(tmp) / f"{path.parent.name}.{fmt}"
                try:
                    t = time.perf_counter()
                    export_model(model, cfg, out, fmt, dynamo=EXPORTERS[args.exporter])
                    seconds = time.perf_counter() - t
                    diff = check_export(model, cfg, out, fmt)
                    dim = int(model(torch.zeros(1, 3, *cfg.input.size))["features"].shape[1])
                    print(f"{name:<44} {fmt:<12} {seconds:>8.1f} {diff:>11.2e}  {dim}  "
                          f"({cfg.input.size[0]}x{cfg.input.size[1]})", flush=True)
                    failures += diff is None or diff > 1e-4
                except Exception as exc:  # noqa: BLE001
                    first = (str(exc).strip().splitlines() or [""])[0]
                    print(f"{name:<44} {fmt:<12} FAILED: {type(exc).__name__}: {first[:200]}", flush=True)
                    failures += 1
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
