"""What the figures read from a run folder (written by :class:`reid.engine.trainer.Trainer`):

``metrics.json`` (``history``: one record per evaluation, ``{"epoch", "rank1", ..., "mAP"}``;
``final``), ``tb/`` TensorBoard scalars (``epoch/loss``, ``train/lr``, ``train/<loss term>``), and
``log.txt`` (``epoch E/N lr X loss Y ...`` lines, read only when ``tb/`` has no events), plus
``checkpoints/best.pth`` / ``last.pth``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from reid.registry import UserError

EPOCH_LINE = re.compile(r"epoch (\d+)/\d+ lr (\S+) (.*?)(?: \(samples without|\s+\(\d+ img/s|$)")


def run_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder's ``checkpoints/best.pth`` (else ``last.pth``)."""
    path = Path(path)
    if path.is_file():
        return path
    for name in ("best.pth", "last.pth"):
        if (path / "checkpoints" / name).is_file():
            return path / "checkpoints" / name
    raise UserError(f"{path}: neither a checkpoint file nor a run folder with checkpoints/best.pth or last.pth")


def run_folder(path: str | Path) -> Path:
    """The run folder of ``path`` (a run folder or a checkpoint in its ``checkpoints/``)."""
    path = Path(path)
    if path.is_file():
        return path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path


def read_metrics(run: str | Path) -> dict[str, Any]:
    """The run's ``metrics.json`` (UserError when absent)."""
    path = run_folder(run) / "metrics.json"
    if not path.is_file():
        raise UserError(f"{path} not found: the run has not finished (metrics.json is written at its end)")
    return json.loads(path.read_text())


def read_scalars(run: str | Path) -> dict[str, tuple[list[float], list[float]]]:
    """TensorBoard scalars of ``run/tb`` as {tag: (steps, values)}; {} when there are none."""
    tb = run_folder(run) / "tb"
    if not tb.is_dir():
        return {}
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return {}
    out: dict[str, tuple[list[float], list[float]]] = {}
    for events in sorted(tb.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            steps, values = out.setdefault(tag, ([], []))
            for e in acc.Scalars(tag):
                steps.append(float(e.step))
                values.append(float(e.value))
    for tag, (steps, values) in out.items():  # a resumed run appends to a new file: keep the last per step
        last = dict(zip(steps, values))
        out[tag] = (sorted(last), [last[s] for s in sorted(last)])
    return out


def read_log_epochs(run: str | Path) -> dict[str, tuple[list[float], list[float]]]:
    """Per-epoch lr and loss terms from ``log.txt`` lines as {"lr"|term: (epochs, values)}."""
    path = run_folder(run) / "log.txt"
    out: dict[str, dict[float, float]] = {}
    if not path.is_file():
        return {}
    for line in path.read_text().splitlines():
        m = EPOCH_LINE.search(line)
        if not m:
            continue
        epoch = float(m.group(1))
        out.setdefault("lr", {})[epoch] = float(m.group(2))
        terms = m.group(3).split()
        for name, value in zip(terms[::2], terms[1::2]):
            try:
                out.setdefault(name, {})[epoch] = float(value)
            except ValueError:
                continue
    return {k: (sorted(v), [v[e] for e in sorted(v)]) for k, v in out.items()}


def training_series(run: str | Path) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """{"loss": {...}, "lr": {...}, "evaluation (%)": {...}} by epoch for :func:`curves_figure`.

    Loss: the per-epoch mean (``epoch/loss``), lr: per step converted to epochs (``train/lr``), from
    ``tb/``, else from ``log.txt``; evaluation: mAP and rank-1 of ``metrics.json``'s history.
    """
    if not run_folder(run).is_dir():
        raise UserError(f"{run}: no such run folder")
    scalars = read_scalars(run)
    series: dict[str, dict[str, tuple[list[float], list[float]]]] = {"loss": {}, "lr": {}, "evaluation (%)": {}}
    if "epoch/loss" in scalars:
        series["loss"]["loss"] = scalars["epoch/loss"]
        epochs = scalars["epoch/loss"][0]
        if "train/lr" in scalars and "train/loss" in scalars and epochs:
            steps = scalars["train/lr"][0]
            per_epoch = (max(steps) + 1) / max(epochs) if steps else 1.0
            series["lr"]["lr"] = ([s / per_epoch for s in steps], scalars["train/lr"][1])
    else:
        logged = read_log_epochs(run)
        if "loss" in logged:
            series["loss"]["loss"] = logged["loss"]
        if "lr" in logged:
            series["lr"]["lr"] = logged["lr"]
    try:
        history = read_metrics(run).get("history", [])
    except UserError:
        history = []
    for key, name in (("mAP", "mAP"), ("rank1", "rank-1")):
        points = [(float(r["epoch"]), 100 * float(r[key])) for r in history if key in r]
        if points:
            series["evaluation (%)"][name] = ([p[0] for p in points], [p[1] for p in points])
    return series


def metrics_cmc(run: str | Path, which: str = "best") -> tuple[list[int], list[float]]:
    """(ranks, matching rates) of ``metrics.json``'s ``best`` (or ``final``) record: the ranks the
    trainer reports (rank1, rank5, rank10)."""
    metrics = read_metrics(run)
    record = metrics.get(which) or metrics.get("final") or {}
    ranks = sorted(int(k[4:]) for k in record if re.fullmatch(r"rank\d+", k))
    if not ranks:
        raise UserError(f"{run_folder(run)}/metrics.json: no rank-k entries in '{which}'")
    return ranks, [float(record[f"rank{k}"]) for k in ranks]



def pick_queries(valid: np.ndarray, count: int) -> np.ndarray:
    """``count`` evenly spaced indices among the queries with a true match (``valid`` [Q] bool)."""
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        raise UserError("no query has a true match in the gallery")
    return idx[np.linspace(0, len(idx) - 1, num=min(count, len(idx))).astype(int)]
