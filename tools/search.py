#!/usr/bin/env python
"""Search a gallery (a folder of images or a features .npz) for the nearest images to query images.

    python tools/search.py --checkpoint CK --query IMG [IMG ...] --gallery DIR|FILE.npz --topk K
                           [--out DIR] [--chunk-size N] [--config CFG] [KEY=VALUE ...]

Prints each query's top-k gallery images with their distances (``test.metric`` of the config,
cosine by default) and writes ``search.csv`` (query, rank, gallery path, distance, and pid / camid
when the .npz has them) and ``search.png`` (each query beside its ranked matches) to ``--out``
(default ``search_results``). A gallery .npz comes from tools/extract.py with the same checkpoint;
a folder is extracted first (recursively; unreadable images skipped and counted). The gallery is
searched ``--chunk-size`` rows at a time (bounded memory: see reid.inference.search.topk_search).
``--index FILE`` instead of ``--gallery``: an index written by tools/index.py (cosine similarity);
refused unless it was built from this checkpoint's features. With ``--index``, ``--nprobe``,
``--ef-search`` and ``--refine`` replace the index's search-time parameters for this search.
"""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from reid.cli import config_parser, device, positive_int, run  # noqa: E402


def main() -> int:
    parser = config_parser(__doc__.strip().splitlines()[0], config_required=False)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by tools/train.py")
    parser.add_argument("--query", required=True, nargs="+", metavar="IMG", help="query image files")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--gallery", metavar="DIR|FILE.npz",
                        help="a folder of images or a features file written by tools/extract.py")
    source.add_argument("--index", metavar="FILE", help="a gallery index written by tools/index.py (needs faiss)")
    for option, what in (("nprobe", "ivf/ivfpq lists searched"), ("ef_search", "hnsw candidates"),
                         ("refine", "candidates re-ranked, times --topk (an index built with --refine)")):
        parser.add_argument("--" + option.replace("_", "-"), type=positive_int, default=None, metavar="N",
                            help=f"--index: {what} (default: the index's)")
    parser.add_argument("--topk", type=positive_int, default=10, help="matches per query (default 10)")
    parser.add_argument("--out", default="search_results", metavar="DIR", help="where search.csv and search.png go")
    parser.add_argument("--chunk-size", type=positive_int, default=None, help="gallery rows per search step")
    parser.add_argument("--device", type=device, default=None,
                        help="cpu | cuda | cuda:N (default: the config's device)")
    args = parser.parse_args()

    from reid.atomic_io import atomic_write_text, check_apart
    from reid.engine.guards import check_folder
    from reid.inference import FeatureExtractor, list_images
    from reid.inference.features_io import extract_files, load_features
    from reid.inference.figure import search_figure
    from reid.inference.search import CHUNK_SIZE, topk_search
    from reid.registry import UserError

    if args.topk < 1:
        raise UserError(f"--topk must be >= 1, got {args.topk}")
    out = Path(args.out)
    check_folder(out, "--out")
    outputs = [("--out", out / "search.csv"), ("--out", out / "search.png")]
    check_apart(outputs, {"--checkpoint": args.checkpoint, "--config": args.config, "--query": args.query,
                          "--gallery": args.gallery, "--index": args.index})
    extractor = FeatureExtractor(args.checkpoint, device=args.device, config=args.config, overrides=args.overrides)
    cfg = extractor.cfg
    query = extractor(args.query)  # an unreadable query is an error (ImageInputError)
    search = {k: getattr(args, k) for k in ("nprobe", "ef_search", "refine") if getattr(args, k) is not None}
    if search and not args.index:
        raise UserError(f"--{next(iter(search)).replace('_', '-')} applies only with --index")
    gallery_path = Path(args.gallery or args.index)
    if args.index:
        dist, idx, gallery = _search_index(gallery_path, extractor, query, args.topk, search)
    elif gallery_path.is_dir():
        paths = list_images(gallery_path)
        check_apart(outputs, {"--gallery": paths})
        if not paths:
            raise UserError(f"--gallery {gallery_path}: no image files found")
        feats, kept, failed = extract_files(extractor, paths)
        if failed:
            print(f"warning: skipped {len(failed)} unreadable gallery images, e.g. {failed[0][0]} ({failed[0][1]})",
                  file=sys.stderr)
        gallery = {"features": feats.numpy(), "paths": [paths[i] for i in kept]}
    elif gallery_path.suffix == ".npz":
        gallery = load_features(gallery_path)
    else:
        raise UserError(f"--gallery {gallery_path}: neither a folder nor a .npz features file")
    if args.index:
        pass
    elif len(gallery["features"]) == 0:
        raise UserError(f"--gallery {gallery_path}: no gallery features")
    elif gallery["features"].shape[1] != query.shape[1]:
        raise UserError(f"--gallery {gallery_path}: features have {gallery['features'].shape[1]} dimensions, this "
                        f"checkpoint's have {query.shape[1]}; extract the gallery with the same checkpoint")
    else:
        dist, idx = topk_search(query, gallery["features"], args.topk, chunk_size=args.chunk_size or CHUNK_SIZE,
                                metric=str(cfg.test.metric))
        dist, idx = np.maximum(dist.numpy(), 0.0), idx.numpy()  # cosine 1 - cos can round to -1e-7
    extra = [k for k in ("pids", "camids") if k in gallery]
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["query", "rank", "gallery", "distance", *[k[:-1] for k in extra]])
    for q, name in enumerate(args.query):
        print(f"query {name}:")
        for r in range(idx.shape[1]):
            g = int(idx[q, r])
            labels = [int(gallery[k][g]) for k in extra]
            writer.writerow([name, r + 1, str(gallery["paths"][g]), f"{dist[q, r]:.6f}", *labels])
            print(f"  {r + 1:>3}. {dist[q, r]:.4f}  {gallery['paths'][g]}"
                  + "".join(f"  {k[:-1]} {v}" for k, v in zip(extra, labels)))
    atomic_write_text(out / "search.csv", table.getvalue())
    figure = search_figure(out / "search.png", args.query, [str(p) for p in gallery["paths"]], idx, dist,
                           size=cfg.input.size)
    print(f"=> wrote {out / 'search.csv'} and {figure} ({'cosine' if args.index else cfg.test.metric} distances)")
    return 0


def _search_index(path, extractor, query, k, search):
    """(distances 1 - cos [Q, k], gallery rows [Q, k], {paths[, pids, camids]}) of an index written
    by tools/index.py, searched with ``search`` (search-time parameters, each checked against the
    index: one ``error:`` line naming the option); refused when it holds another model's features."""
    import re

    from reid.inference.index import GalleryIndex, GalleryIndexError
    from reid.inference.loading import feature_contract
    from reid.registry import UserError

    index = GalleryIndex.load(path)
    try:
        index.configure(**search)
    except GalleryIndexError as exc:
        raise UserError(f"--index {path}: " + re.sub(r"index parameter '(\w+)'", lambda m: "--" + m.group(1).replace(
            "_", "-"), str(exc))) from None
    index.check({**feature_contract(extractor.cfg, extractor.model), "dim": int(query.shape[1])}, f"--index {path}")
    dist, idx = index.search(query.numpy(), k)
    gallery = {"paths": index.paths}
    if index.pids is not None:
        gallery.update(pids=index.pids, camids=index.camids)
    return np.maximum(dist, 0.0), idx, gallery  # 1 - cos can round below 0


if __name__ == "__main__":
    run(main)
