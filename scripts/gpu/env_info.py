#!/usr/bin/env python
"""The environment part of the GPU check: GPU name and memory, driver, torch / CUDA / cuDNN /
Python versions, CPU cores, and which optional packages import (torchvision for the torchreid
peer, onnxruntime, numba).

    python scripts/gpu/env_info.py [--md env.md]
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch


def driver() -> str:
    try:
        res = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return res.stdout.strip().splitlines()[0] if res.returncode == 0 and res.stdout.strip() else "-"
    except (OSError, subprocess.TimeoutExpired):
        return "- (no nvidia-smi)"


def version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "present")
    except Exception as exc:  # an optional package: absent or broken, either is a fact to report
        return f"absent ({type(exc).__name__})"


def rows() -> list[tuple[str, str]]:
    out = [("python", platform.python_version()), ("torch", torch.__version__),
           ("CUDA (torch built with)", str(torch.version.cuda)), ("CUDA available", str(torch.cuda.is_available())),
           ("cuDNN", str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "-"),
           ("NCCL", ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else "-"),
           ("driver", driver()), ("CPU cores", str(os.cpu_count())), ("torch threads", str(torch.get_num_threads()))]
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        out += [(f"GPU {i}", f"{p.name}, compute capability {p.major}.{p.minor}, {p.multi_processor_count} SMs"),
                (f"GPU {i} memory", f"{total / 2**30:.1f} GiB ({free / 2**30:.1f} GiB free)"),
                (f"GPU {i} bf16", str(torch.cuda.is_bf16_supported()))]
    for module in ("torchvision", "numba", "onnxruntime", "tensorboard", "PIL", "numpy"):
        out.append((module, version(module)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--md", help="write the table here too")
    args = ap.parse_args()
    table = "\n".join(["| what | value |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows()])
    print(table)
    if args.md:
        Path(args.md).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
