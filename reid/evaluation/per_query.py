"""Per-query results on disk (CSV or .npz) for plots and failure analysis without a re-run."""
from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np

from reid.evaluation.rank import RankResult

FIELDS = ("index", "path", "pid", "camid", "valid", "ap", "inp", "first_match_rank")


def per_query_records(result: RankResult, q_pids=None, q_camids=None, paths: Sequence[str] | None = None
                      ) -> dict[str, np.ndarray]:
    """Column arrays [Nq] for every query: index, path, pid, camid, valid, ap and inp (NaN where
    the query has no valid match), first_match_rank (1-based, -1 where not valid)."""
    valid = np.asarray(result.valid, dtype=bool)
    nq = len(valid)
    ap = np.full(nq, np.nan)
    ap[valid] = result.ap
    inp = np.full(nq, np.nan)
    inp[valid] = result.inp

    def col(x, fill):
        if x is None:
            return np.full(nq, fill)
        x = np.asarray(x.cpu() if hasattr(x, "cpu") else x)
        if len(x) != nq:
            raise ValueError(f"expected {nq} entries, got {len(x)}")
        return x

    return {
        "index": np.arange(nq), "path": col(paths, "").astype(str), "pid": col(q_pids, -1).astype(np.int64),
        "camid": col(q_camids, -1).astype(np.int64), "valid": valid, "ap": ap, "inp": inp,
        "first_match_rank": np.asarray(result.first_match_rank, dtype=np.int64),
    }


def save_per_query(path: str | os.PathLike, result: RankResult, q_pids=None, q_camids=None,
                   paths: Sequence[str] | None = None) -> str:
    """Writes :func:`per_query_records` to ``path``: ``.npz`` (one array per column, plus
    ``cmc``, ``mAP``, ``mINP``) or CSV otherwise (columns ``FIELDS``; ap/inp empty where not
    valid). Returns the path written."""
    rec = per_query_records(result, q_pids, q_camids, paths)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".npz"):
        np.savez_compressed(path, cmc=result.cmc, mAP=result.mAP, mINP=result.mINP, **rec)
        return path
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FIELDS)
        for i in range(len(rec["index"])):
            row = []
            for k in FIELDS:
                v = rec[k][i]
                if k in ("ap", "inp"):
                    row.append("" if np.isnan(v) else f"{v:.6f}")
                elif k == "valid":
                    row.append(int(v))
                else:
                    row.append(v)
            w.writerow(row)
    return path


def load_per_query(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a file written by :func:`save_per_query` back into column arrays."""
    path = os.fspath(path)
    if path.endswith(".npz"):
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, np.ndarray] = {}
    for k in FIELDS:
        vals = [r[k] for r in rows]
        if k == "path":
            out[k] = np.array(vals, dtype=str)
        elif k in ("ap", "inp"):
            out[k] = np.array([float(v) if v else np.nan for v in vals])
        elif k == "valid":
            out[k] = np.array([v == "1" for v in vals])
        else:
            out[k] = np.array(vals, dtype=np.int64)
    return out
