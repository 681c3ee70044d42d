#!/usr/bin/env python
"""Export a checkpoint to ONNX or TorchScript for deployment.

    python tools/export.py --checkpoint CK --format onnx|torchscript --out FILE [--raw] [--dynamo]
                           [--config CFG] [KEY=VALUE ...]

The exported graph maps float32 images [N, 3, H, W] (N dynamic; H, W = the checkpoint's
``input.size``) to the evaluator's retrieval features [N, D] (``test.flip`` averaging in the graph;
L2-normalised unless ``--raw``). The input normalisation is NOT in the graph: resize to H x W and feed
``(rgb / 255 - pixel_mean) / pixel_std``; the values are written into the file (ONNX metadata_props
``reid.*``; TorchScript extra file ``reid.json``) and printed. The export is checked before the tool
returns: the file's output equals PyTorch's (max abs difference printed) for a batch of a size other
than the traced one (ONNX with onnxruntime when installed: pip install reid[export]).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid.cli import config_parser, run  # noqa: E402


def main() -> int:
    parser = config_parser(__doc__.strip().splitlines()[0], config_required=False)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by tools/train.py")
    parser.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    parser.add_argument("--out", required=True, metavar="FILE", help="the file to write (.onnx / .pt)")
    parser.add_argument("--raw", action="store_true", help="output features not L2-normalised")
    parser.add_argument("--dynamo", action="store_true",
                        help="ONNX: the torch.export-based exporter only (default: the TorchScript-based one, "
                             "falling back to torch.export for operators it lacks)")
    args = parser.parse_args()

    from reid.atomic_io import check_apart
    from reid.engine.guards import check_output_file
    from reid.inference import load_model
    from reid.inference.export import check_export, export_model
    from reid.registry import UserError

    check_apart({"--out": args.out}, {"--checkpoint": args.checkpoint, "--config": args.config})
    check_output_file(args.out, "--out")

    if args.format == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise UserError("ONNX export needs the onnx package: pip install reid[export]") from None
    model, cfg = load_model(args.checkpoint, "cpu", config=args.config, overrides=args.overrides)
    out = export_model(model, cfg, args.out, args.format, normalize=not args.raw, checkpoint=args.checkpoint,
                       dynamo=True if args.dynamo else None)
    h, w = (int(v) for v in cfg.input.size)
    print(f"=> wrote {out} ({args.format}): images float32 [N, 3, {h}, {w}] -> features [N, D]"
          + (" (raw)" if args.raw else " (L2-normalised)") + (", flip-averaged" if cfg.test.flip else ""))
    print(f"   input: resize to {h}x{w} ({cfg.input.interpolation}), x = (rgb / 255 - {list(cfg.input.pixel_mean)}) "
          f"/ {list(cfg.input.pixel_std)}  (not in the graph; stored in the file's metadata)")
    diff = check_export(model, cfg, out, args.format, normalize=not args.raw)
    if diff is None:
        print("   not checked: onnxruntime is not installed (pip install reid[export])")
    else:
        print(f"   check: max |exported - PyTorch| = {diff:.2e} on a batch of 3")
    return 0


if __name__ == "__main__":
    run(main)
