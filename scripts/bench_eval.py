#!/usr/bin/env python
"""Benchmark of reid.evaluation against the field's published evaluators, side by side.

    python scripts/bench_eval.py                 # Market-1501-sized cases (a few minutes)
    python scripts/bench_eval.py --msmt          # + MSMT17-sized cases (longer)

Problems: the real Market-1501 test identity/camera structure (../shared/data/market1501-protocol,
junk removed: 3,368 queries x 15,913 gallery) with seeded random identity-clustered features, and
an MSMT17-sized one (11,659 x 82,161, 3,060 identities, 15 cameras, seeded). The references come
from the peers' packages as published on PyPI, installed into a temporary virtualenv: fast-reid's
Cython evaluator (``fastreid==1.4.0`` ships ``rank_cy.pyx``; built there with Cython) and
torchreid's NumPy evaluator and ``re_ranking`` (``torchreid==0.2.5``, a pip re-packaging of
deep-person-reid that ships no Cython source). Nothing of theirs is copied into the project.
Every case runs in its own subprocess; time is the best of ``--repeats`` runs, peak memory is the
subprocess's ``ru_maxrss`` (inputs included). The distance matrices of the ranking cases have each
row replaced by its ranks (same order, no tied distances) so results can be compared exactly.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT.parent / "shared" / "data" / "market1501-protocol" / "market1501_test_labels.npz"
PEERS = ["fastreid==1.4.0", "torchreid==0.2.5"]


# --------------------------------------------------------------------------------------- helpers
def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        out = None  # the previous result is not counted in the next run's peak memory
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def emit(**kw) -> None:
    kw.setdefault("peak_mb", peak_mb())
    print("RESULT " + json.dumps(kw), flush=True)


def load_labels(work: Path):
    z = np.load(work / "labels.npz")
    return z["qp"], z["gp"], z["qc"], z["gc"]


# ------------------------------------------------------------------------- workers (subprocesses)
def worker_ref_eval_cy(work: Path, repeats: int) -> None:
    """fast-reid's Cython evaluator (run by the peer environment's python)."""
    sys.path.insert(0, str(work / "rank_cylib"))
    import rank_cy  # noqa: PLC0415  (built in the temporary environment)

    dist = np.load(work / "market_dist.npy")
    qp, gp, qc, gc = load_labels(work)
    t, (cmc, ap, inp) = best_of(lambda: rank_cy.evaluate_cy(dist, qp, gp, qc, gc, 50, False), repeats)
    np.savez(work / "out_ref_eval_cy.npz", cmc=cmc, ap=ap, inp=inp)
    emit(time=t)


def worker_ref_eval_py(work: Path, repeats: int) -> None:
    """torchreid's NumPy evaluator, loaded from the installed file (its package needs torch)."""
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("tr_rank", os.environ["TORCHREID_RANK"])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    dist = np.load(work / "market_dist.npy")
    qp, gp, qc, gc = load_labels(work)
    t, (cmc, mAP) = best_of(lambda: mod.eval_market1501(dist, qp, gp, qc, gc, 50), repeats)
    np.savez(work / "out_ref_eval_py.npz", cmc=cmc, mAP=mAP)
    emit(time=t)


def worker_ref_rerank(work: Path, repeats: int) -> None:
    """torchreid's ``re_ranking`` (Zhong et al.'s reference code, distance-matrix form)."""
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("tr_rerank", os.environ["TORCHREID_RERANK"])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    qg, qq, gg = (np.load(work / f"market_{k}.npy") for k in ("qg", "qq", "gg"))
    base = peak_mb()
    t, out = best_of(lambda: mod.re_ranking(qg, qq, gg, k1=20, k2=6, lambda_value=0.3), 1)
    np.save(work / "out_ref_rerank.npy", out)
    emit(time=t, input_mb=base)


def worker_ours_eval(work: Path, repeats: int, backend: str, device: str = "cpu") -> None:
    import torch  # noqa: PLC0415

    from reid.evaluation import evaluate_rank  # noqa: PLC0415

    dist = torch.from_numpy(np.load(work / "market_dist.npy")).to(device)
    qp, gp, qc, gc = load_labels(work)
    evaluate_rank(dist[:8], qp[:8], gp, qc[:8], gc, backend=backend)  # numba: compile or load cache

    def run():
        r = evaluate_rank(dist, qp, gp, qc, gc, max_rank=50, backend=backend)
        if device != "cpu":
            torch.cuda.synchronize()
        return r

    t, r = best_of(run, repeats)
    np.savez(work / f"out_ours_eval_{backend}_{device}.npz", cmc=r.cmc, ap=r.ap, inp=r.inp)
    emit(time=t)


def worker_ours_rerank(work: Path, repeats: int) -> None:
    from reid.evaluation import re_rank  # noqa: PLC0415

    qg, qq, gg = (np.load(work / f"market_{k}.npy") for k in ("qg", "qq", "gg"))
    base = peak_mb()
    re_rank(qg[:50, :200], qq[:50, :50], gg[:200, :200])  # numba: compile or load cache
    t, out = best_of(lambda: re_rank(qg, qq, gg), repeats)
    np.save(work / "out_ours_rerank.npy", out)
    emit(time=t, input_mb=base)


def msmt_problem(dim: int, seed: int = 17):
    """MSMT17-sized: 3,060 test identities, 15 cameras, 11,659 queries, 82,161 gallery images."""
    import torch  # noqa: PLC0415

    g = torch.Generator().manual_seed(seed)
    nid, nq, ng = 3060, 11659, 82161
    qp = torch.cat([torch.arange(nid), torch.randint(0, nid, (nq - nid,), generator=g)])
    gp = torch.cat([torch.arange(nid).repeat(2), torch.randint(0, nid, (ng - 2 * nid,), generator=g)])
    qc, gc = torch.randint(0, 15, (nq,), generator=g), torch.randint(0, 15, (ng,), generator=g)
    centers = torch.randn(nid, dim, generator=g)
    qf = centers[qp] + 1.2 * torch.randn(nq, dim, generator=g)
    gf = torch.empty(ng, dim)
    for a in range(0, ng, 8192):  # no full-size temporaries
        gf[a:a + 8192] = centers[gp[a:a + 8192]] + 1.2 * torch.randn(min(8192, ng - a), dim, generator=g)
    return qf, gf, qp.numpy(), gp.numpy(), qc.numpy(), gc.numpy()


def worker_msmt_eval(work: Path, repeats: int, dim: int) -> None:
    from reid.evaluation import evaluate_features  # noqa: PLC0415

    qf, gf, qp, gp, qc, gc = msmt_problem(dim)
    base = peak_mb()
    t, r = best_of(lambda: evaluate_features(qf, gf, qp, gp, qc, gc, metric="cosine"), repeats)
    emit(time=t, input_mb=base, mAP=r.mAP, rank1=float(r.cmc[0]))


def worker_msmt_rerank(work: Path, repeats: int, dim: int) -> None:
    from reid.evaluation import FeatureReranker, evaluate_features  # noqa: PLC0415

    qf, gf, qp, gp, qc, gc = msmt_problem(dim)
    base = peak_mb()

    def run():
        rr = FeatureReranker(qf, gf, metric="cosine")
        return evaluate_features(qf, gf, qp, gp, qc, gc, dist_fn=rr.distances)

    t, r = best_of(run, 1)
    emit(time=t, input_mb=base, mAP=r.mAP, rank1=float(r.cmc[0]))


WORKERS = {
    "ref_eval_cy": worker_ref_eval_cy, "ref_eval_py": worker_ref_eval_py, "ref_rerank": worker_ref_rerank,
    "ours_eval_numba": lambda w, r: worker_ours_eval(w, r, "numba"),
    "ours_eval_torch": lambda w, r: worker_ours_eval(w, r, "torch"),
    "ours_eval_cuda": lambda w, r: worker_ours_eval(w, r, "torch", "cuda"),
    "ours_rerank": worker_ours_rerank,
}


# ----------------------------------------------------------------------------------------- parent
def setup_peer_env(env: Path) -> tuple[Path, dict[str, str]]:
    """Temporary virtualenv with the peers' published packages; fast-reid's Cython built there."""
    py = env / "bin" / "python"
    if not py.exists():
        print(f"installing {', '.join(PEERS)} into {env} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run(pip + ["numpy", "Cython", "setuptools", "wheel"], check=True)
        # their pinned dependencies (torch 1.13, faiss, ...) are not needed by the evaluators
        subprocess.run(pip + ["--no-deps", "--no-build-isolation"] + PEERS, check=True)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    return py, {
        "cylib": str(site / "fastreid" / "evaluation" / "rank_cylib"),
        "TORCHREID_RANK": str(site / "torchreid" / "reid" / "metrics" / "rank.py"),
        "TORCHREID_RERANK": str(site / "torchreid" / "reid" / "utils" / "rerank.py"),
    }


def build_cython(py: Path, cylib: str, work: Path) -> None:
    dst = work / "rank_cylib"
    if not list(dst.glob("rank_cy*.so")):
        shutil.copytree(cylib, dst, dirs_exist_ok=True)
        print("building fast-reid's rank_cy with Cython ...", flush=True)
        subprocess.run([str(py), "setup.py", "build_ext", "--inplace"], cwd=dst, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def build_market(work: Path, dim: int = 256, seed: int = 1501) -> None:
    import torch  # noqa: PLC0415

    from reid.evaluation import compute_distance  # noqa: PLC0415

    z = np.load(LABELS)
    keep = z["gallery_pids"] != -1  # junk images are dropped by the data set parsers
    qp, qc = z["query_pids"].astype(np.int64), z["query_camids"].astype(np.int64)
    gp, gc = z["gallery_pids"][keep].astype(np.int64), z["gallery_camids"][keep].astype(np.int64)
    np.savez(work / "labels.npz", qp=qp, gp=gp, qc=qc, gc=gc)
    g = torch.Generator().manual_seed(seed)
    pids = np.concatenate([qp, gp])
    ids, inv = np.unique(pids, return_inverse=True)
    feats = torch.randn(len(ids), dim, generator=g)[torch.from_numpy(inv)]
    feats += 1.2 * torch.randn(len(pids), dim, generator=g)
    feats[torch.from_numpy(pids == 0)] = 2 * torch.randn(int((pids == 0).sum()), dim, generator=g)  # distractors
    qf, gf = feats[:len(qp)], feats[len(qp):]
    qg = compute_distance(qf, gf).numpy()
    np.save(work / "market_qg.npy", qg)
    np.save(work / "market_qq.npy", compute_distance(qf, qf).numpy())
    gg = np.lib.format.open_memmap(work / "market_gg.npy", mode="w+", dtype=np.float32, shape=(len(gp), len(gp)))
    for a in range(0, len(gp), 2048):
        gg[a:a + 2048] = compute_distance(gf[a:a + 2048], gf).numpy()
    gg.flush()
    del gg
    # ranking cases: each row replaced by its ranks (same order, no ties) for exact comparison
    rank = np.empty_like(qg)
    order = np.argsort(qg, axis=1, kind="stable")
    np.put_along_axis(rank, order, np.arange(qg.shape[1], dtype=np.float32)[None, :] / qg.shape[1], axis=1)
    np.save(work / "market_dist.npy", rank)


def run_case(name: str, py, work: Path, repeats: int, env: dict | None = None, extra: list | None = None) -> dict:
    print(f"  case {name} ...", flush=True)
    cmd = [str(py), str(Path(__file__).resolve()), "--worker", name, "--workdir", str(work),
           "--repeats", str(repeats)] + (extra or [])
    e = dict(os.environ, **(env or {}))
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    p = subprocess.run(cmd, capture_output=True, text=True, env=e)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"case {name} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")


def fmt_row(cells, widths):
    return " | ".join(str(c).ljust(w) for c, w in zip(cells, widths))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--msmt", action="store_true", help="also run the MSMT17-sized cases (several minutes)")
    ap.add_argument("--msmt-dim", type=int, default=2048, help="feature size of the MSMT17-sized evaluation")
    ap.add_argument("--msmt-rerank-dim", type=int, default=256,
                    help="feature size of the MSMT17-sized re-ranking (its N x N distance pass is the cost)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, help="keep inputs/outputs here (default: a temporary folder)")
    ap.add_argument("--peer-env", type=Path, help="reuse this virtualenv for the peers' packages")
    ap.add_argument("--skip-ref-rerank", action="store_true", help="skip the ~1-2 minute reference re-ranking")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        if args.worker == "msmt_eval":
            worker_msmt_eval(args.workdir, args.repeats, args.msmt_dim)
        elif args.worker == "msmt_rerank":
            worker_msmt_rerank(args.workdir, args.repeats, args.msmt_rerank_dim)
        else:
            WORKERS[args.worker](args.workdir, args.repeats)
        return

    if not LABELS.exists():
        sys.exit(f"missing {LABELS} (the shared real-data folder)")
    tmp = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="reid-bench-")
        args.workdir = Path(tmp)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    try:
        py, paths = setup_peer_env(args.peer_env or work / "peer-venv")
        build_cython(py, paths.pop("cylib"), work)
        if not (work / "market_dist.npy").exists():  # seeded: a kept --workdir is reused
            print("building the Market-sized problem ...", flush=True)
            build_market(work)
        rows = []
        qp, gp, qc, gc = load_labels(work)
        header = ["case", "reference", "ref time s", "ours", "ours time s", "ratio", "max diff", "ref peak GB",
                  "ours peak GB"]

        ref = run_case("ref_eval_cy", py, work, args.repeats, paths)
        rcy = np.load(work / "out_ref_eval_cy.npz")
        refpy = run_case("ref_eval_py", py, work, 1, paths)
        rpy = np.load(work / "out_ref_eval_py.npz")
        import torch  # noqa: PLC0415

        from reid.evaluation import HAVE_NUMBA  # noqa: PLC0415

        backends = (["numba"] if HAVE_NUMBA else []) + ["torch"] + (["cuda"] if torch.cuda.is_available() else [])
        for b in backends:
            name = f"ours_eval_{b}"
            res = run_case(name, sys.executable, work, args.repeats)
            o = np.load(work / (f"out_ours_eval_{b}_cpu.npz" if b != "cuda" else "out_ours_eval_torch_cuda.npz"))
            diff_cy = max(np.abs(o["cmc"] - rcy["cmc"]).max(), np.abs(o["ap"] - rcy["ap"]).max(),
                          np.abs(o["inp"] - rcy["inp"]).max())
            diff_py = max(np.abs(o["cmc"] - rpy["cmc"]).max(), abs(o["ap"].mean() - float(rpy["mAP"])))
            label = {"numba": "evaluate_rank (numba)", "torch": "evaluate_rank (torch, no numba)",
                     "cuda": "evaluate_rank (CUDA)"}[b]
            rows.append(["Market eval 3368x15913", "fast-reid rank_cy (Cython)", f"{ref['time']:.3f}", label,
                         f"{res['time']:.3f}", f"{ref['time'] / res['time']:.1f}x", f"{diff_cy:.1e}",
                         f"{ref['peak_mb'] / 1024:.2f}", f"{res['peak_mb'] / 1024:.2f}"])
            rows.append(["", "torchreid eval_market1501 (NumPy)", f"{refpy['time']:.3f}", "  (same run)",
                         f"{res['time']:.3f}", f"{refpy['time'] / res['time']:.1f}x", f"{diff_py:.1e}",
                         f"{refpy['peak_mb'] / 1024:.2f}", ""])
        ours = run_case("ours_rerank", sys.executable, work, args.repeats)
        if not args.skip_ref_rerank:
            print("running the reference re-ranking (about a minute or two) ...", flush=True)
            rref = run_case("ref_rerank", py, work, 1, paths)
            diff = np.abs(np.load(work / "out_ref_rerank.npy") - np.load(work / "out_ours_rerank.npy")).max()
            rows.append(["Market re-rank k1=20 k2=6 l=0.3", "torchreid re_ranking (Zhong et al.)",
                         f"{rref['time']:.2f}", "re_rank", f"{ours['time']:.2f}",
                         f"{rref['time'] / ours['time']:.1f}x", f"{diff:.1e}", f"{rref['peak_mb'] / 1024:.2f}",
                         f"{ours['peak_mb'] / 1024:.2f}"])
        else:
            rows.append(["Market re-rank", "(skipped)", "", "re_rank", f"{ours['time']:.2f}", "", "", "",
                         f"{ours['peak_mb'] / 1024:.2f}"])
        rows.append(["  inputs alone (qg+qq+gg float32)", "", "", "", "", "", "", "",
                     f"{ours['input_mb'] / 1024:.2f}"])
        if args.msmt:
            print("running the MSMT17-sized cases ...", flush=True)
            me = run_case("msmt_eval", sys.executable, work, 1, extra=["--msmt-dim", str(args.msmt_dim)])
            rows.append([f"MSMT17 eval 11659x82161 {args.msmt_dim}-D", "n/a (dense: ~15 GB)", "",
                         "evaluate_features", f"{me['time']:.1f}", "", "", "", f"{me['peak_mb'] / 1024:.2f}"])
            mr = run_case("msmt_rerank", sys.executable, work, 1,
                          extra=["--msmt-rerank-dim", str(args.msmt_rerank_dim)])
            rows.append([f"MSMT17 re-rank + eval {args.msmt_rerank_dim}-D", "n/a (dense N x N: 35 GB)", "",
                         "FeatureReranker", f"{mr['time']:.1f}", "", "", "", f"{mr['peak_mb'] / 1024:.2f}"])
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        print()
        print(fmt_row(header, widths))
        print("-+-".join("-" * w for w in widths))
        for r in rows:
            print(fmt_row(r, widths))
        print(f"\nqueries valid: {int(np.isin(qp, gp).sum())}/{len(qp)}; CPU threads: {torch.get_num_threads()}; "
              f"numba: {HAVE_NUMBA}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
