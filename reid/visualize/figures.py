"""Drawing the figures with matplotlib (the optional extra ``reid[plot]``).

* :func:`attention_figure`: rows = images, columns = the maps of :mod:`reid.visualize.attention`;
* :func:`ranked_pair_figure`: two ranked-list grids side by side (LAGA-Net Fig. 3);
* :func:`stacked_rows_figure`: one labelled ranked-list row per data set (Fig. 4);
* :func:`cmc_figure`: CMC curves of several runs; :func:`curves_figure`: loss, lr and mAP per epoch.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reid.atomic_io import atomic_file
from reid.registry import UserError

INSTALL_HINT = "pip install 'reid[plot]'"
#: Attention grid geometry in pixels (dpi 100): one cell, its label band, the figure's title band.
CELL_W, CELL_H, LABEL_H, TITLE_H, NOTE_H = 96, 160, 34, 24, 18
DPI = 100


class PlotUnavailable(UserError, ImportError):
    """matplotlib is not installed."""


def require_matplotlib():
    """``matplotlib.pyplot`` with the Agg backend, or PlotUnavailable saying what to install."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable(f"the figures need matplotlib, which is not installed ({exc}); "
                              f"install it with: {INSTALL_HINT}") from None
    return plt


def normalised(maps: torch.Tensor, size: Sequence[int]) -> np.ndarray:
    """[B, h, w] -> float [B, H, W] in [0, 1]: bilinear upsampling, then min-max per map."""
    up = F.interpolate(maps[:, None].float().cpu(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    lo = up.amin(dim=(1, 2), keepdim=True)
    span = (up.amax(dim=(1, 2), keepdim=True) - lo).clamp_min(1e-12)
    return ((up - lo) / span).numpy()


def region(maps: torch.Tensor, size: Sequence[int]) -> np.ndarray:
    """[B, h, w] binary -> [B, H, W] (nearest-neighbour upsampling, the cells as the layer sees them)."""
    return F.interpolate(maps[:, None].float().cpu(), size=tuple(size), mode="nearest")[:, 0].numpy()


def attention_grid_size(rows: int, cols: int, notes: int = 0) -> tuple[int, int]:
    """(width, height) in pixels of :func:`attention_figure`'s PNG."""
    return cols * CELL_W, TITLE_H + rows * (CELL_H + LABEL_H) + notes * NOTE_H


def attention_figure(images: np.ndarray, columns: list[Any], path: str | Path, title: str = "",
                     notes: Sequence[str] = (), row_labels: Sequence[str] = ()) -> Path:
    """Grid PNG: column 0 the image, then one overlay per column (``MapColumn``-like: label, maps
    [B, h, w], kind heat | region | mask, point). Size :func:`attention_grid_size`."""
    plt = require_matplotlib()
    rows, cols = len(images), len(columns) + 1
    width, height = attention_grid_size(rows, cols, len(notes))
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    size = images.shape[1:3]
    prepared = []
    for c in columns:
        prepared.append(region(c.maps, size) if c.kind == "region" else
                        c.maps.float().cpu().numpy() if c.kind == "mask" else normalised(c.maps, size))
    fig.text(0.5, 1 - (TITLE_H / 2) / height, title, ha="center", va="center", fontsize=8)
    for r in range(rows):
        top = TITLE_H + r * (CELL_H + LABEL_H)
        for k in range(cols):
            ax = fig.add_axes([(k * CELL_W + 3) / width, 1 - (top + LABEL_H + CELL_H - 3) / height,
                               (CELL_W - 6) / width, (CELL_H - 6) / height])
            ax.set_axis_off()
            ax.imshow(images[r], aspect="auto")
            if k == 0:
                label = row_labels[r] if r < len(row_labels) else "image"
                label = label if len(label) <= 16 else label[:16] + "\n" + label[16:]
            else:
                col = columns[k - 1]
                label = col.label
                values = prepared[k - 1][r]
                if col.kind == "region":
                    ax.imshow(np.dstack([np.ones_like(values), np.zeros_like(values), np.zeros_like(values),
                                         0.55 * values]), aspect="auto")
                elif col.kind == "mask":
                    ax.imshow(values, cmap="gray", vmin=0, vmax=1, alpha=0.6, aspect="auto")
                else:
                    ax.imshow(values, cmap="jet", vmin=0, vmax=1, alpha=0.5, aspect="auto")
                if col.point is not None:
                    ax.plot([col.point[1] * size[1] - 0.5], [col.point[0] * size[0] - 0.5], marker="x",
                            color="white", markersize=7, markeredgewidth=2)
            if r == 0 or k == 0:
                fig.text((k + 0.5) * CELL_W / width, 1 - (top + LABEL_H / 2) / height, label,
                         ha="center", va="center", fontsize=6)
    for i, note in enumerate(notes):
        fig.text(0.01, (len(notes) - i - 0.5) * NOTE_H / height, "note: " + note, ha="left", va="center", fontsize=7)
    return _save(fig, plt, path)


def _save(fig, plt, path: str | Path, **kwargs) -> Path:
    """Write ``fig`` to ``path`` atomically (format by extension; PNG: palette-quantised)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".") or "png"
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format=fmt, **kwargs)
            if fmt == "png":  # 256-colour palette: a third of the size, same pixels count
                from PIL import Image

                with Image.open(tmp) as im:
                    small = im.convert("RGB").quantize(256)
                small.save(tmp, format="PNG", optimize=True)
    finally:
        plt.close(fig)
    return path


def ranked_pair_figure(grids: Sequence[np.ndarray], titles: Sequence[str], path: str | Path,
                       suptitle: str = "") -> Path:
    """Ranked-list grids (uint8 [H, W, 3], e.g. from ``ranked_list_grid``) side by side, titled."""
    plt = require_matplotlib()
    h = max(g.shape[0] for g in grids)
    total_w = sum(g.shape[1] for g in grids) + 20 * (len(grids) - 1)
    fig = plt.figure(figsize=(total_w / DPI, (h + 40) / DPI), dpi=DPI)
    x = 0
    for g, t in zip(grids, titles):
        ax = fig.add_axes([x / total_w, 0, g.shape[1] / total_w, g.shape[0] / (h + 40)])
        ax.imshow(g, interpolation="nearest")
        ax.set_axis_off()
        fig.text((x + g.shape[1] / 2) / total_w, 1 - 12 / (h + 40), t, ha="center", va="center", fontsize=8)
        x += g.shape[1] + 20
    if suptitle:
        fig.text(0.5, 1 - 28 / (h + 40), suptitle, ha="center", va="center", fontsize=6, color="dimgray")
    return _save(fig, plt, path)


def stacked_rows_figure(rows: Sequence[np.ndarray], labels: Sequence[str], path: str | Path) -> Path:
    """Ranked-list rows (uint8 [h, w, 3]) stacked vertically, each with its label on the left (a
    column wide enough for the longest label line)."""
    plt = require_matplotlib()
    longest = max((len(line) for label in labels for line in label.splitlines()), default=0)
    label_w, gap = max(150, 6 * longest + 12), 6  # 7-point text: under 6 pixels a character at DPI 100
    w = max(r.shape[1] for r in rows) + label_w
    h = sum(r.shape[0] for r in rows) + gap * (len(rows) - 1)
    fig = plt.figure(figsize=(w / DPI, h / DPI), dpi=DPI)
    y = 0
    for row, label in zip(rows, labels):
        ax = fig.add_axes([label_w / w, 1 - (y + row.shape[0]) / h, row.shape[1] / w, row.shape[0] / h])
        ax.imshow(row, interpolation="nearest")
        ax.set_axis_off()
        fig.text(4 / w, 1 - (y + row.shape[0] / 2) / h, label, ha="left", va="center", fontsize=7)
        y += row.shape[0] + gap
    return _save(fig, plt, path)


def cmc_figure(curves: dict[str, Sequence[float]], path: str | Path, ranks: dict[str, Sequence[int]] | None = None,
               title: str = "CMC") -> Path:
    """CMC curves (fractions, rank 1 first) of several runs on one plot; ``ranks`` gives the ranks of
    runs known at a few ranks only (e.g. 1, 5, 10 from metrics.json)."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(4.2, 3.0), dpi=DPI)
    for name, cmc in curves.items():
        r = list(ranks[name]) if ranks and name in ranks else list(range(1, len(cmc) + 1))
        ax.plot(r, [100 * v for v in cmc], marker="o", markersize=3, label=name)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, plt, path)


def curves_figure(series: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]], path: str | Path,
                  title: str = "") -> Path:
    """One panel per entry of ``series`` ({panel: {line: (x, y)}}), e.g. loss, lr, mAP by epoch."""
    plt = require_matplotlib()
    panels = [p for p, lines in series.items() if lines]
    if not panels:
        raise UserError("nothing to plot: the run folder holds no loss, lr or evaluation history")
    fig, axes = plt.subplots(1, len(panels), figsize=(2.8 * len(panels), 2.5), dpi=DPI, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for name, (x, y) in series[panel].items():
            ax.plot(x, y, marker="o" if len(x) < 30 else None, markersize=3, label=name)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(series[panel]) > 1:
            ax.legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, plt, path)
