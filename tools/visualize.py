#!/usr/bin/env python
"""Figures from trained checkpoints and run folders (needs matplotlib: pip install 'reid[plot]').

    python tools/visualize.py attention --checkpoint CK --images IMG [IMG ...] --out FILE.png
                              [--query-positions R,C ...] [--las-top K] [--cam-target class|norm]
    python tools/visualize.py ranked --checkpoints CK_A CK_B --out FILE.png [--queries N] [--topk K]
    python tools/visualize.py per-dataset --runs RUN [RUN ...] --out FILE.png [--names NAME ...] [--topk K]
    python tools/visualize.py cmc --runs RUN [RUN ...] --out FILE.png [--evaluate] [--max-rank R]
    python tools/visualize.py curves --run RUN --out FILE.png

``RUN``/``CK`` is a run folder (its checkpoints/best.pth, else last.pth) or a checkpoint file; its
config travels in the checkpoint. ``KEY=VALUE`` overrides apply to every checkpoint's config (e.g.
``dataset.root=...`` or ``device=cuda``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid.cli import device, nonneg_int, positive_int, run, seed_int  # noqa: E402
from reid.registry import UserError  # noqa: E402


def positions(text: str) -> tuple[float, float]:
    try:
        r, c = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': a query position is ROW,COL as fractions, e.g. 0.3,0.5") from None
    if not (0 <= r <= 1 and 0 <= c <= 1):
        raise argparse.ArgumentTypeError(f"'{text}': ROW and COL must be in [0, 1]")
    return r, c


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--out", required=True, help="the PNG to write")
        p.add_argument("--device", type=device, default="cpu", help="cpu | cuda | cuda:N")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
        return p

    p = command("attention", "every spatial attention map and a Grad-CAM of a checkpoint, per image")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--query-positions", nargs="+", type=positions, metavar="ROW,COL",
                   help="SAM-RPE query positions, fractions of the image (default: 0.15,0.5 0.45,0.5 0.8,0.5)")
    p.add_argument("--las-top", type=nonneg_int, default=3, help="LAS maps to show (largest first)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the BA-DropBlock / BDB draw shown")
    p.add_argument("--cam-target", choices=("class", "norm"), default="class",
                   help="Grad-CAM of the top identity class or of the feature norm")
    p.add_argument("--masks", help="folder of body-part label maps <stem>.png (MMGA ground truth)")

    p = command("ranked", "ranked lists of two checkpoints side by side for the same queries")
    p.add_argument("--checkpoints", nargs=2, required=True, metavar=("A", "B"))
    p.add_argument("--names", nargs=2, metavar=("NAME_A", "NAME_B"))
    p.add_argument("--queries", type=positive_int, default=6, help="number of queries (evenly spaced)")
    p.add_argument("--topk", type=positive_int, default=10)

    p = command("per-dataset", "one query per data set, one row per run")
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--names", nargs="+", help="one name per run for the row labels (default: the run folders)")
    p.add_argument("--query-index", type=nonneg_int, default=0, help="which query with a true match (0: the first)")
    p.add_argument("--topk", type=positive_int, default=10)

    p = command("cmc", "CMC curves of several runs on one plot")
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--names", nargs="+")
    p.add_argument("--evaluate", action="store_true",
                   help="evaluate each run's checkpoint for the full curve (default: rank-1/5/10 of metrics.json)")
    p.add_argument("--max-rank", type=positive_int, default=20)

    p = command("curves", "training curves (loss, lr, mAP / rank-1) of a run folder")
    p.add_argument("--run", required=True)
    return parser


def attention(args) -> Path:
    from reid.data.transforms import to_input
    from reid.inference import load_model
    from reid.inference.images import read_images
    from reid.registry import UserError
    from reid.visualize.attention import DEFAULT_QUERIES, figure_columns, read_masks
    from reid.visualize.figures import attention_figure

    model, cfg = load_model(args.checkpoint, args.device, overrides=args.overrides)
    size = tuple(cfg.input.size)
    images, _, failed = read_images(args.images, size, str(cfg.input.interpolation))
    if failed:
        raise UserError("cannot read " + "; ".join(f"{path} ({why})" for path, why in failed))
    x = to_input(images, cfg.input.pixel_mean, cfg.input.pixel_std, args.device)
    masks = read_masks(args.images, size, args.masks)
    found = figure_columns(model, x, args.query_positions or DEFAULT_QUERIES, args.las_top, args.seed,
                           args.cam_target, masks)
    for note in found.notes:
        print(f"note: {note}")
    title = f"{cfg.model.name}: {Path(args.checkpoint).name} ({size[0]}x{size[1]})"
    return attention_figure(images, found.columns, args.out, title, found.notes,
                            [Path(p).name for p in args.images])


def ranked(args) -> Path:
    from reid.visualize.figures import ranked_pair_figure
    from reid.visualize.ranking import rank_checkpoint
    from reid.visualize.runs import pick_queries, run_checkpoint

    names = args.names or [str(c) for c in args.checkpoints]
    first = rank_checkpoint(run_checkpoint(args.checkpoints[0]), args.overrides, args.device, name=names[0])
    second = rank_checkpoint(run_checkpoint(args.checkpoints[1]), args.overrides, args.device, name=names[1])
    if second.cfg.dataset != first.cfg.dataset:  # rank B on A's data set: the same queries
        second = rank_checkpoint(run_checkpoint(args.checkpoints[1]), args.overrides, args.device,
                                 dataset=first.dataset, name=names[1])
    queries = pick_queries(first.valid_queries(), args.queries)
    titles = [f"{r.name}: rank-1 {100 * r.cmc(1)[0]:.1f}%" for r in (first, second)]
    return ranked_pair_figure([first.grid(queries, args.topk), second.grid(queries, args.topk)], titles, args.out,
                              f"{first.dataset.name}: the same {len(queries)} queries (grey); "
                              "true matches green, false red")


def per_dataset(args) -> Path:
    from reid.visualize.figures import stacked_rows_figure
    from reid.visualize.ranking import rank_checkpoint
    from reid.visualize.runs import run_checkpoint, run_folder

    names = args.names or [run_folder(r).name for r in args.runs]
    if len(names) != len(args.runs):
        raise UserError(f"--names: {len(names)} names for {len(args.runs)} runs")
    rows, labels = [], []
    for name, run_path in zip(names, args.runs):
        r = rank_checkpoint(run_checkpoint(run_path), args.overrides, args.device)
        valid = r.valid_queries().nonzero()[0]
        if len(valid) == 0:
            raise UserError(f"{run_path}: no query has a true match")
        q = int(valid[min(args.query_index, len(valid) - 1)])
        rows.append(r.grid([q], args.topk))
        labels.append(f"{r.dataset.name}\n{name}\n({r.cfg.model.name})")
    return stacked_rows_figure(rows, labels, args.out)


def cmc(args) -> Path:
    from reid.visualize.figures import cmc_figure
    from reid.visualize.ranking import rank_checkpoint
    from reid.visualize.runs import metrics_cmc, run_checkpoint, run_folder

    names = args.names or [run_folder(r).name for r in args.runs]
    if len(names) != len(args.runs):
        raise UserError(f"--names: {len(names)} names for {len(args.runs)} runs")
    curves, ranks = {}, {}
    for name, run_path in zip(names, args.runs):
        if args.evaluate:
            ranking = rank_checkpoint(run_checkpoint(run_path), args.overrides, args.device)
            curves[name] = list(ranking.cmc(args.max_rank))
        else:
            ranks[name], curves[name] = metrics_cmc(run_path)
    return cmc_figure(curves, args.out, ranks, "CMC" + ("" if args.evaluate else " (metrics.json: best epoch)"))


def curves(args) -> Path:
    from reid.visualize.figures import curves_figure
    from reid.visualize.runs import run_folder, training_series

    return curves_figure(training_series(args.run), args.out, f"run {run_folder(args.run).resolve().name}")


def input_files(args) -> dict[str, list[Path]]:
    """Every file the command reads, by option (a folder given: the files in it)."""
    found: dict[str, list[Path]] = {}
    for key in ("checkpoint", "checkpoints", "images", "runs", "run", "masks"):
        given = getattr(args, key, None)
        for item in [given] if isinstance(given, str) else given or []:
            path = Path(item)
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
            found.setdefault(f"--{key}", []).extend(files)
    return found


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from reid.atomic_io import check_apart
    from reid.engine.guards import check_output_file
    from reid.visualize.figures import require_matplotlib

    require_matplotlib()  # before any work
    check_apart({"--out": args.out}, input_files(args))
    check_output_file(args.out, "--out")
    commands = {"attention": attention, "ranked": ranked, "per-dataset": per_dataset, "cmc": cmc, "curves": curves}
    print(f"=> wrote {commands[args.command](args)}")
    return 0


if __name__ == "__main__":
    run(main)
