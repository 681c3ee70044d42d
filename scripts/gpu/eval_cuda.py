#!/usr/bin/env python
"""The evaluator's CUDA path at Market-1501 and MSMT17 size against its CPU path: time, peak GPU
memory and equality of the results (CMC, mAP, mINP, each query's AP and first-match rank).

    python scripts/gpu/eval_cuda.py [--md data_eval.md] [--dim 2048] [--cpu-queries 2000] [--dry-run]

Problems: Market-1501's real test labels (``market1501_test_labels.npz``: from ``.gpu/`` where
scripts/gpu_prepare.sh puts it, else ../shared/data/market1501-protocol; junk removed: 3,368
queries x 15,913 gallery) and an MSMT17-sized one (11,659 x 82,161, 3,060 identities, 15 cameras,
seeded), with seeded identity-clustered random features (``--dim``), cosine distance, Market
protocol. Both are evaluated on CUDA with :func:`reid.evaluation.evaluate_features`; the CPU path
evaluates the first ``--cpu-queries`` queries of each (all of Market's by default), which are
compared with the CUDA result's same queries. ``--dry-run``: CPU only, tiny sizes (the CUDA column is
a second CPU run). Exit code 1 when a compared figure differs by more than ``--tol``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from reid.evaluation import evaluate_features  # noqa: E402

LABELS = [ROOT / ".gpu" / "market1501_test_labels.npz",
          ROOT.parent / "shared" / "data" / "market1501-protocol" / "market1501_test_labels.npz"]


def market_labels() -> tuple[np.ndarray, ...]:
    for path in LABELS:
        if path.is_file():
            z = np.load(path)
            keep = z["gallery_pids"] != -1
            return z["query_pids"], z["query_camids"], z["gallery_pids"][keep], z["gallery_camids"][keep]
    raise SystemExit(f"error: Market-1501 test labels not found at {' or '.join(map(str, LABELS))} "
                     "(run scripts/gpu_prepare.sh)")


def msmt_labels(nq: int, ng: int, ids: int = 3060, cams: int = 15, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, ids, nq), rng.integers(0, cams, nq), rng.integers(0, ids, ng), rng.integers(0, cams, ng))


def features(pids: np.ndarray, dim: int, seed: int) -> torch.Tensor:
    """Identity-clustered, L2-normalised float32 features [N, dim] (pids < 5000; the distractor pid 0
    is one more cluster); ``seed`` draws the noise, the identity centres are the same for every call."""
    centres = torch.randn(5000, dim, generator=torch.Generator().manual_seed(12345))  # shared by query and gallery
    g = torch.Generator().manual_seed(seed)
    # noise sized so a true match's similarity (1 / (1 + s^2)) is near the top of the chance ones (~3.5 / sqrt(dim)):
    # rank-1 well below 100%, so the rankings compared are not trivial
    sigma = max(0.5, dim ** 0.5 / 3.5 - 1) ** 0.5
    x = centres[torch.from_numpy(pids.astype(np.int64))] + sigma * torch.randn(len(pids), dim, generator=g)
    return torch.nn.functional.normalize(x, dim=1)


def run(qf, gf, labels, device: torch.device):
    """(result, seconds, peak bytes on CUDA or None)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    q, g = qf.to(device), gf.to(device)
    result = evaluate_features(q, g, *labels, metric="cosine", max_rank=50, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) - base if device.type == "cuda" else None
    return result, seconds, peak


def compare(a, b) -> dict[str, float]:
    """Largest differences between two results over the same queries."""
    return {"cmc": float(np.abs(a.cmc - b.cmc).max()), "mAP": abs(a.mAP - b.mAP), "mINP": abs(a.mINP - b.mINP),
            "ap": float(np.abs(a.ap - b.ap).max()) if len(a.ap) == len(b.ap) else float("inf"),
            "rank_diff": int((a.first_match_rank != b.first_match_rank).sum())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--cpu-queries", type=int, default=2000, help="queries the CPU path evaluates per problem")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest accepted CMC / mAP / mINP / AP difference")
    ap.add_argument("--dry-run", action="store_true", help="CPU only, tiny sizes")
    ap.add_argument("--md", help="append the table to this file")
    args = ap.parse_args()
    if args.dim < 1 or args.cpu_queries < 1:
        ap.error("--dim and --cpu-queries must be >= 1")
    cpu = torch.device("cpu")
    dev = cpu if args.dry_run else torch.device("cuda")
    mq, mqc, mg, mgc = market_labels()
    problems = {"Market-1501": (mq, mqc, mg, mgc), "MSMT17": msmt_labels(11659, 82161)}
    if args.dry_run:
        keep = np.isin(mg, mq[:300]) | (mg == 0)  # the first 300 queries' identities and the distractors
        problems = {"Market-1501": (mq[:300], mqc[:300], mg[keep], mgc[keep]), "MSMT17": msmt_labels(200, 3000)}
        args.dim = min(args.dim, 64)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    lines = [f"evaluator: cosine, Market protocol, {args.dim}-d features; device {name}; CPU path on "
             f"{torch.get_num_threads()} threads", "",
             "| problem | queries x gallery | device s | device peak GiB | R1 | mAP | mINP | CPU queries | CPU s "
             "| max diff CMC / mAP / mINP / AP | first-match ranks differing |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    bad = False
    for i, (problem, (qp, qc, gp, gc)) in enumerate(problems.items()):
        qf, gf = features(qp, args.dim, 2 * i), features(gp, args.dim, 2 * i + 1)
        run(qf[:8], gf, (qp[:8], gp, qc[:8], gc), dev)  # warm-up: CUDA context, kernels
        full, dev_s, peak = run(qf, gf, (qp, gp, qc, gc), dev)
        n = min(args.cpu_queries, len(qp))
        ref, cpu_s, _ = run(qf[:n], gf, (qp[:n], gp, qc[:n], gc), cpu)
        same, _, _ = run(qf[:n], gf, (qp[:n], gp, qc[:n], gc), dev) if n < len(qp) else (full, 0, None)
        d = compare(same, ref)
        bad |= max(d["cmc"], d["mAP"], d["mINP"], d["ap"]) > args.tol
        s = full.summary((1,))
        lines.append(f"| {problem} | {len(qp):,} x {len(gp):,} | {dev_s:.2f} | "
                     f"{'-' if peak is None else f'{peak / 2**30:.2f}'} | {100 * s['rank1']:.1f} | "
                     f"{100 * s['mAP']:.1f} | {100 * s['mINP']:.1f} | {n:,} | {cpu_s:.2f} | "
                     f"{d['cmc']:.1e} / {d['mAP']:.1e} / {d['mINP']:.1e} / {d['ap']:.1e} | {d['rank_diff']} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        with open(args.md, "a") as f:
            f.write(text)
    if bad:
        print(f"error: the device and CPU results differ by more than {args.tol}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
