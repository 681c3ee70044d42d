#!/usr/bin/env python
"""Extract retrieval features of a folder of images or of a data set split into a .npz file.

    python tools/extract.py --checkpoint CK --images DIR --out FILE.npz [--raw] [KEY=VALUE ...]
    python tools/extract.py --checkpoint CK --split query|gallery|train --out FILE.npz [--config CFG]

``--images``: every image under DIR (recursive; jpg, png, bmp, webp, tif, ...; any size: each is
resized to the checkpoint's ``input.size`` exactly as the test images are). ``--split``: the
configured data set's split (the checkpoint's stored data set unless ``--config`` or
``dataset.*`` overrides name another). The .npz holds ``features`` [N, D] float32 (L2-normalised;
``--raw``: not), ``paths`` [N], and for a split ``pids`` and ``camids`` [N]. Unreadable images are
listed, counted and skipped.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid.cli import config_parser, device, positive_int, run  # noqa: E402

SPLITS = ("query", "gallery", "train")
#: Unreadable files printed by name; the rest are counted.
LISTED_FAILURES = 20


def main() -> int:
    parser = config_parser(__doc__.strip().splitlines()[0], config_required=False)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by tools/train.py")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="a folder of images (searched recursively)")
    source.add_argument("--split", choices=SPLITS, help="a split of the configured data set")
    parser.add_argument("--out", required=True, metavar="FILE.npz", help="the features file to write")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="images per forward pass (default: test.batch_size)")
    parser.add_argument("--device", type=device, default=None,
                        help="cpu | cuda | cuda:N (default: the config's device)")
    parser.add_argument("--raw", action="store_true", help="features as the network outputs them, not L2-normalised")
    args = parser.parse_args()

    from reid.atomic_io import check_apart
    from reid.engine.guards import check_output_file
    from reid.inference import FeatureExtractor, list_images
    from reid.inference.features_io import extract_files, save_features
    from reid.inference.loading import feature_contract
    from reid.registry import UserError

    check_apart({"--out": args.out}, {"--checkpoint": args.checkpoint, "--config": args.config})
    check_output_file(args.out, "--out")

    extractor = FeatureExtractor(args.checkpoint, device=args.device, normalize=not args.raw, config=args.config,
                                 overrides=args.overrides)
    cfg = extractor.cfg
    extractor.batch_size = int(args.batch_size or cfg.test.batch_size)
    pids = camids = None
    if args.images:
        try:
            paths = list_images(args.images)
        except FileNotFoundError as exc:
            raise UserError(f"--images {exc}") from None
        if not paths:
            raise UserError(f"--images {args.images}: no image files found "
                            "(looked for *.jpg, *.png, *.bmp, *.webp, ...)")
    else:
        from reid.data import build_dataset

        dataset = build_dataset(cfg, verbose=False)
        samples = getattr(dataset, args.split)
        if not samples:
            raise UserError(f"data set '{dataset.name}' has an empty {args.split} split")
        paths = [s.path for s in samples]
        pids, camids = [s.pid for s in samples], [s.camid for s in samples]
    check_apart({"--out": args.out}, {"--images" if args.images else f"--split {args.split}": paths})
    print(f"=> {len(paths)} images, model '{cfg.model.name}' at {cfg.input.size[0]}x{cfg.input.size[1]}, "
          f"flip {'on' if extractor.flip else 'off'}, {'raw' if args.raw else 'L2-normalised'} features")
    features, kept, failed = extract_files(extractor, paths)
    for path, reason in failed[:LISTED_FAILURES]:
        print(f"unreadable, skipped: {path} ({reason})", file=sys.stderr)
    if len(failed) > LISTED_FAILURES:
        print(f"... and {len(failed) - LISTED_FAILURES} more unreadable images", file=sys.stderr)
    if failed:
        print(f"warning: skipped {len(failed)} of {len(paths)} images that could not be read", file=sys.stderr)
    if not kept:
        raise UserError(f"none of the {len(paths)} images could be read; nothing written")
    pick = (lambda values: [values[i] for i in kept]) if failed else (lambda values: values)
    contract = {**feature_contract(cfg, extractor.model), "dim": int(features.shape[1])}  # for tools/index.py
    out = save_features(args.out, features.numpy(), pick(paths), pids=pick(pids) if pids else None,
                        camids=pick(camids) if camids else None, contract=contract)
    print(f"=> wrote {out}: features {list(features.shape)}" + (", pids, camids" if pids else ""))
    return 0


if __name__ == "__main__":
    run(main)
