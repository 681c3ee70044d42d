#!/usr/bin/env python
"""reid's ranking metrics against the field's evaluators on continuous, tied and quantised distances.

The references are run from checkouts OUTSIDE this repository (nothing of theirs is copied in):
torchreid (KaiyangZhou/deep-person-reid: ``torchreid/metrics/rank_cylib/rank_cy.pyx`` and
``torchreid/metrics/rank.py``) and, optionally, fast-reid (JDAI-CV/fast-reid:
``fastreid/evaluation/rank_cylib/rank_cy.pyx`` and ``fastreid/evaluation/rank.py``)::

    pip install --target /tmp/cython 'Cython>=3'     # only to build the .pyx; optional
    PYTHONPATH=/tmp/cython python scripts/compare_evaluators.py \\
        --torchreid /path/to/deep-person-reid --fastreid /path/to/fast-reid

Each reference's Cython evaluator is built twice in ``--build-dir``: as released, and with its
``np.argsort(distmat, axis=1)`` made ``kind="stable"`` (ties in gallery order, reid's rule). Without
Cython the references' Python ``eval_market1501`` is used (loaded from the checkout, ``np.argsort``
made stable the same way). For each generated Market-protocol case the script prints the largest
difference of CMC (ranks 1..50), mAP and (fast-reid) mINP between reid (numba and torch backends)
and the stable reference, which must be below float32 rounding (``--tol``), and, for information,
the difference to the reference as released (its default quicksort orders ties as it happens to).
NaN distances are run through the references as released and must be an error in reid.
Exit status 1 when a stable comparison fails.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.evaluation import HAVE_NUMBA, NonFiniteError, evaluate_rank  # noqa: E402

REFERENCES = {  # name -> (pyx, python module) inside the checkout
    "torchreid": ("torchreid/metrics/rank_cylib/rank_cy.pyx", "torchreid/metrics/rank.py"),
    "fastreid": ("fastreid/evaluation/rank_cylib/rank_cy.pyx", "fastreid/evaluation/rank.py"),
}
ARGSORT = re.compile(r"np\.argsort\(distmat, axis=1\)")
MAX_RANK = 50


def stable_source(text: str, where: str) -> str:
    """``text`` with its distance argsorts made stable; refuses a source without one."""
    out, n = ARGSORT.subn('np.argsort(distmat, axis=1, kind="stable")', text)
    if n == 0:
        raise SystemExit(f"error: {where}: no 'np.argsort(distmat, axis=1)' to make stable; another version?")
    return out


def build_cython(pyx: Path, name: str, build: Path, stable: bool):
    """Compile ``pyx`` (argsort made stable with ``stable``) as module ``name``; None without Cython."""
    try:
        from Cython.Build import cythonize
        from setuptools import Distribution, Extension
    except ImportError:
        return None
    src = build / f"{name}.pyx"
    text = pyx.read_text()
    src.write_text(stable_source(text, str(pyx)) if stable else text)
    ext = Extension(name, [str(src)], include_dirs=[np.get_include()],
                    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
    dist = Distribution({"ext_modules": cythonize([ext], quiet=True, compiler_directives={"language_level": 3})})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib, cmd.build_temp = str(build), str(build / "tmp")
    dist.run_command("build_ext")
    return load_module(name, next(build.glob(f"{name}*.so")))


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def python_reference(py: Path, name: str, build: Path, stable: bool):
    """The checkout's Python evaluator (its Cython import fails outside its package)."""
    text = py.read_text()
    path = build / f"{name}.py"
    path.write_text(stable_source(text, str(py)) if stable else text)
    return load_module(name, path)


class Reference:
    """One reference evaluator: ``run(dist, qp, gp, qc, gc) -> (cmc [<=50], mAP, mINP or None)``."""

    def __init__(self, ref: str, checkout: Path, build: Path, stable: bool, use_cython: bool):
        pyx, py = (checkout / p for p in REFERENCES[ref])
        tag = f"{ref}_{'stable' if stable else 'released'}"
        self.mod = build_cython(pyx, f"{tag}_cy", build, stable) if use_cython else None
        self.kind = "cython" if self.mod is not None else "python"
        if self.mod is None:
            self.mod = python_reference(py, f"{tag}_py", build, stable)
        self.name = f"{ref} ({self.kind}, {'stable argsort' if stable else 'as released'})"

    def run(self, dist, qp, gp, qc, gc):
        args = (dist.astype(np.float32), qp, gp, qc, gc, MAX_RANK)
        out = self.mod.evaluate_cy(*args, False) if self.kind == "cython" else self.mod.eval_market1501(*args)
        if len(out) == 3:  # fast-reid: cmc, per-query AP, per-query INP
            cmc, ap, inp = out
            return np.asarray(cmc, np.float64), float(np.mean(ap)), float(np.mean(inp))
        cmc, m_ap = out
        return np.asarray(cmc, np.float64), float(m_ap), None


def make_case(seed: int, nq: int, ng: int, nid: int, ncam: int, levels: int):
    """Market-style labels and uniform distances, quantised to ``levels`` values (0: continuous,
    1: all equal); 10% of the gallery are distractors (pid 0)."""
    rng = np.random.default_rng(seed)
    gp = rng.integers(1, nid + 1, ng)
    gp[: ng // 10] = 0
    qp = rng.integers(1, nid + 1, nq)
    gc, qc = rng.integers(0, ncam, ng), rng.integers(0, ncam, nq)
    dist = rng.random((nq, ng)).astype(np.float32)
    if levels:
        dist = (np.floor(dist * levels) / levels).astype(np.float32)
    return dist, qp, gp, qc, gc


def differences(ours, ref) -> dict[str, float]:
    cmc, m_ap, m_inp = ref
    k = len(cmc)
    out = {"cmc": float(np.abs(ours.cmc[:k] - cmc).max()), "rank1": float(ours.cmc[0] - cmc[0]),
           "mAP": float(ours.mAP - m_ap)}
    if m_inp is not None:
        out["mINP"] = float(ours.mINP - m_inp)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torchreid", type=Path, required=True, help="checkout of KaiyangZhou/deep-person-reid")
    ap.add_argument("--fastreid", type=Path, help="checkout of JDAI-CV/fast-reid (optional)")
    ap.add_argument("--build-dir", type=Path, help="where the .pyx are built (default: a temporary folder)")
    ap.add_argument("--python", action="store_true", help="use the references' Python evaluators, not Cython")
    ap.add_argument("--size", choices=("small", "market"), default="small",
                    help="small: 200 x 2000; market: Market-1501's 3368 x 15913")
    ap.add_argument("--seeds", type=int, default=2, help="cases per quantisation level")
    ap.add_argument("--tol", type=float, default=2e-5, help="largest difference to the stable references")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    for flag, path in (("--torchreid", args.torchreid), ("--fastreid", args.fastreid)):
        if path is not None and not path.is_dir():
            ap.error(f"{flag}: not a folder: {path}")
    build = args.build_dir or Path(tempfile.mkdtemp(prefix="reid_compare_"))
    build.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(build))
    refs = [(r, c) for r, c in (("torchreid", args.torchreid), ("fastreid", args.fastreid)) if c is not None]
    stable = {r: Reference(r, c, build, True, not args.python) for r, c in refs}
    released = {r: Reference(r, c, build, False, not args.python) for r, c in refs}
    shape = dict(nq=200, ng=2000, nid=150, ncam=6) if args.size == "small" else dict(nq=3368, ng=15913, nid=750, ncam=6)
    backends = ["torch"] + (["numba"] if HAVE_NUMBA else [])
    print(f"numpy {np.__version__}; references: " + ", ".join(x.name for x in [*stable.values(), *released.values()]))
    print(f"{'case':>22} {'reference':>44} {'backend':>7} {'max|dCMC|':>10} {'d rank-1':>9} {'d mAP':>9} {'d mINP':>9}")
    results, failed = [], 0
    for levels in (0, 1, 2, 5, 50, 1000):
        for seed in range(args.seeds):
            case = make_case(seed, levels=levels, **shape)
            label = f"{'continuous' if not levels else f'{levels} levels'} seed {seed}"
            for backend in backends:
                ours = evaluate_rank(*case, max_rank=MAX_RANK, backend=backend)
                for ref in stable:
                    for which, r in (("stable", stable[ref]), ("released", released[ref])):
                        if which == "released" and backend != backends[0]:
                            continue
                        d = differences(ours, r.run(*case))
                        bad = which == "stable" and max(abs(v) for v in d.values()) > args.tol
                        failed += bad
                        results.append({"case": label, "reference": r.name, "backend": backend, **d, "fail": bad})
                        print(f"{label:>22} {r.name:>44} {backend:>7} {d['cmc']:10.2e} {d['rank1']:+9.4f} "
                              f"{d['mAP']:+9.4f} {d.get('mINP', float('nan')):+9.4f}" + ("  FAIL" if bad else ""))
    dist, qp, gp, qc, gc = make_case(0, levels=0, **shape)
    nan = np.full_like(dist, np.nan)
    for r in released.values():
        cmc, m_ap, _ = r.run(nan, qp, gp, qc, gc)
        print(f"all-NaN distances: {r.name} reports rank-1 {cmc[0]:.1%}, mAP {m_ap:.1%}")
        results.append({"case": "all NaN", "reference": r.name, "rank1": float(cmc[0]), "mAP": m_ap})
    try:
        evaluate_rank(nan, qp, gp, qc, gc)
        print("all-NaN distances: reid reports a figure  FAIL")
        failed += 1
    except NonFiniteError as exc:
        print(f"all-NaN distances: reid: error: {exc}")
    print(f"{failed} failed comparisons of {sum(1 for r in results if 'fail' in r and 'stable' in r['reference'])} "
          f"against the stable references (tolerance {args.tol:g})")
    if args.json:
        args.json.write_text(json.dumps({"numpy": np.__version__, "results": results, "failed": failed}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
