#!/usr/bin/env python
"""Build a persistent approximate index of a gallery (faiss), or add to one, for tools/search.py --index.

    python tools/index.py --features FILE.npz --out GALLERY.index [--index flat|ivf|ivfpq|hnsw] [params]
    python tools/index.py --checkpoint CK --images DIR --out GALLERY.index [--index KIND] [params] [KEY=VALUE ...]
    python tools/index.py --add GALLERY.index --features MORE.npz | --checkpoint CK --images MORE/

``--features``: a features file of tools/extract.py (it records the checkpoint's contract; an older
file needs ``--checkpoint``, the one that extracted it). ``--images``: every image under DIR,
extracted with ``--checkpoint`` first. The index ranks by cosine similarity (inner product of
L2-normalised features). Parameters: ``ivf`` --nlist --nprobe; ``ivfpq`` --nlist --nprobe --pq-m
--pq-nbits; ``hnsw`` --hnsw-m --ef-construction --ef-search (defaults: reid.inference.index.PARAMS);
``ivf`` / ``ivfpq`` --spherical (spherical k-means for the lists); any of the three --refine R
(re-rank the top ``k * R`` candidates with a second copy of the vectors, --refine-codes flat (exact,
4 bytes a dimension) or sq8 (8-bit, 1 byte a dimension)). tools/search.py can change --nprobe,
--ef-search and --refine at search time.
The file records the feature dimension and the checkpoint's config and weights hashes: features of
another model are refused. Needs ``pip install 'reid[faiss]'``.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid.cli import config_parser, device, positive_int, run  # noqa: E402

#: Option -> index parameter (reid.inference.index.PARAMS).
OPTIONS = {"nlist": "nlist", "nprobe": "nprobe", "pq_m": "m", "pq_nbits": "nbits", "hnsw_m": "M",
           "ef_construction": "ef_construction", "ef_search": "ef_search", "refine": "refine",
           "refine_codes": "refine_codes", "spherical": "spherical", "hnsw_codes": "codes"}
#: Options that are not positive integers (added separately below).
SPECIAL = ("refine_codes", "spherical", "hnsw_codes")


def main() -> int:
    from reid.inference.index import KINDS

    parser = config_parser(__doc__.strip().splitlines()[0], config_required=False)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", metavar="FILE.npz", help="a features file written by tools/extract.py")
    source.add_argument("--images", metavar="DIR", help="a folder of images (recursive), extracted with --checkpoint")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="FILE", help="the index file to write (a new index)")
    target.add_argument("--add", metavar="FILE", help="an existing index file to add the features to (rewritten)")
    parser.add_argument("--checkpoint", help="the checkpoint that computes (or computed) the features")
    parser.add_argument("--index", choices=KINDS, default=None, help="index kind (default flat: exact)")
    helps = {"nlist": "ivf/ivfpq: inverted lists (default about 4 sqrt(N))",
             "nprobe": "ivf/ivfpq: lists searched per query (default 16)",
             "pq_m": "ivfpq: sub-vectors = bytes per vector at 8 bits (default: divisor of D up to 64)",
             "pq_nbits": "ivfpq: bits per sub-vector code (default 8)", "hnsw_m": "hnsw: links per node (default 32)",
             "ef_construction": "hnsw: candidates while building (default 80)",
             "ef_search": "hnsw: candidates per query (default 64)",
             "refine": "ivf/ivfpq/hnsw: re-rank k * R candidates with refine codes (default: no re-ranking)"}
    for option in (o for o in OPTIONS if o not in SPECIAL):
        parser.add_argument("--" + option.replace("_", "-"), type=positive_int, default=None, metavar="N",
                            help=helps[option])
    parser.add_argument("--refine-codes", choices=("flat", "sq8"), default=None,
                        help="with --refine: the re-ranking copy, float32 (flat) or 8-bit (sq8) (default flat)")
    parser.add_argument("--hnsw-codes", choices=("flat", "sq8"), default=None,
                        help="hnsw: the vectors its nodes hold, float32 (flat) or 8-bit (sq8: 4x smaller, "
                             "approximate distances) (default flat)")
    parser.add_argument("--spherical", action="store_const", const=1, default=None,
                        help="ivf/ivfpq: train the lists with spherical k-means")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="--images: images per forward pass")
    parser.add_argument("--device", type=device, default=None,
                        help="--images: cpu | cuda | cuda:N (default: the config's)")
    args = parser.parse_args()

    from reid.atomic_io import check_apart
    from reid.engine.guards import check_output_file
    from reid.inference.index import PARAMS, GalleryIndex, GalleryIndexError, check_params, import_faiss
    from reid.registry import UserError

    import_faiss()  # says how to install it before any work
    given = {opt: getattr(args, opt) for opt in OPTIONS if getattr(args, opt) is not None}
    if args.add:
        for name, value in [("--index", args.index), *[("--" + o.replace("_", "-"), v) for o, v in given.items()]]:
            if value is not None:
                raise UserError(f"{name} does not apply with --add (the index keeps its kind and parameters)")
        index = GalleryIndex.load(args.add)
        where = f"--add {args.add}"
    else:
        kind = args.index or "flat"
        for opt in given:
            if OPTIONS[opt] not in PARAMS[kind]:
                takes = [f"--{o.replace('_', '-')}" for o, p in OPTIONS.items() if p in PARAMS[kind]]
                raise UserError(f"--{opt.replace('_', '-')} does not apply to --index {kind}"
                                f"{'' if args.index else ' (the default; name another with --index)'}; "
                                f"it takes {', '.join(takes) or 'no parameters'}")
        index, where = None, f"--out {args.out}"
        try:
            check_params(kind, {OPTIONS[o]: v for o, v in given.items()})  # before any extraction
        except GalleryIndexError as exc:
            raise UserError(_options(str(exc))) from None
    if args.images and not args.checkpoint:
        raise UserError("--images needs --checkpoint (the model that extracts the features)")
    if args.checkpoint is None and (args.config or args.overrides):
        raise UserError("--config and KEY=VALUE overrides need --checkpoint")
    out_key, out = ("--add", args.add) if args.add else ("--out", args.out)
    check_output_file(out, out_key)
    check_apart({out_key: out}, {"--checkpoint": args.checkpoint, "--config": args.config, "--features": args.features})

    features, paths, pids, camids, contract = (_from_images(args) if args.images else _from_features(args))
    if len(features) == 0:
        raise UserError(f"{args.features or args.images}: no features to index")
    if index is None:
        params = {OPTIONS[o]: v for o, v in given.items()}
        try:
            index = GalleryIndex.build(features, kind, params, contract, paths, pids, camids)
        except GalleryIndexError as exc:
            raise UserError(_options(str(exc))) from None
    else:
        index.check(contract, where)
        index.add(features, paths, pids, camids)
    out = Path(out)
    index.save(out)
    print(f"=> wrote {out}: {index.kind} index"
          + (f" ({', '.join(f'{k}={v}' for k, v in index.params.items())})" if index.params else "")
          + f", {len(index)} vectors of {index.dim} dimensions ({len(features)} added), "
          f"{out.stat().st_size / 2**20:.1f} MB; cosine similarity; model config {index.contract['config']}, "
          f"weights {index.contract['weights']}")
    return 0


def _options(message: str) -> str:
    """``message`` with each "index parameter 'NAME'" (and "nlist") as its command-line option."""
    def option(param: str) -> str:
        return next((f"--{o.replace('_', '-')}" for o, p in OPTIONS.items() if p == param), param)

    return re.sub(r"index parameter '(\w+)'", lambda m: option(m.group(1)), message)


def _checkpoint_contract(args) -> dict:
    from reid.inference import load_model
    from reid.inference.loading import feature_contract

    model, cfg = load_model(args.checkpoint, "cpu", config=args.config, overrides=args.overrides)
    return feature_contract(cfg, model)


def _from_features(args):
    """(features, paths, pids, camids, contract) of a features file; the contract recorded in it
    and that of --checkpoint must agree when both exist."""
    import json

    from reid.inference.features_io import load_features
    from reid.registry import UserError

    data = load_features(args.features)
    features = data["features"]
    stored = json.loads(str(data["contract"])) if "contract" in data else None
    if args.checkpoint:
        contract = {**_checkpoint_contract(args), "dim": int(features.shape[1])}
        if stored is not None and any(stored.get(k) != contract[k] for k in ("config", "weights")):
            raise UserError(f"--features {args.features}: extracted with another model (config {stored.get('config')}, "
                            f"weights {stored.get('weights')}) than --checkpoint {args.checkpoint} "
                            f"(config {contract['config']}, weights {contract['weights']})")
    elif stored is None:
        raise UserError(f"--features {args.features}: records no model (written before features files did); "
                        "name the checkpoint that extracted it: --checkpoint CK")
    else:
        contract = stored
    return features, [str(p) for p in data["paths"]], data.get("pids"), data.get("camids"), contract


def _from_images(args):
    """(features, paths, None, None, contract) of the images under --images, extracted with --checkpoint."""
    from reid.atomic_io import check_apart
    from reid.inference import FeatureExtractor, list_images
    from reid.inference.features_io import extract_files
    from reid.inference.loading import feature_contract
    from reid.registry import UserError

    try:
        paths = list_images(args.images)
    except FileNotFoundError as exc:
        raise UserError(f"--images {exc}") from None
    if not paths:
        raise UserError(f"--images {args.images}: no image files found")
    check_apart({"--add" if args.add else "--out": args.add or args.out}, {"--images": paths})
    extractor = FeatureExtractor(args.checkpoint, device=args.device, config=args.config, overrides=args.overrides)
    extractor.batch_size = int(args.batch_size or extractor.cfg.test.batch_size)
    features, kept, failed = extract_files(extractor, paths)
    if failed:
        print(f"warning: skipped {len(failed)} unreadable images, e.g. {failed[0][0]} ({failed[0][1]})",
              file=sys.stderr)
    if not kept:
        raise UserError(f"--images {args.images}: none of the {len(paths)} images could be read")
    contract = {**feature_contract(extractor.cfg, extractor.model), "dim": int(features.shape[1])}
    return features.numpy(), [paths[i] for i in kept], None, None, contract


if __name__ == "__main__":
    run(main)
