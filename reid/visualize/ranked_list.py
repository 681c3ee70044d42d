"""Ranked-list figures: each query beside its top-k gallery matches, true matches framed green."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from reid.atomic_io import atomic_file

if TYPE_CHECKING:
    from reid.engine.evaluator import Evaluator

GREEN, RED, GREY, WHITE = (40, 170, 60), (210, 40, 40), (150, 150, 150), (255, 255, 255)


def _framed(img: np.ndarray, colour: tuple[int, int, int], border: int) -> Image.Image:
    """uint8 [H,W,3] -> PIL image with a coloured frame ``border`` pixels wide."""
    h, w = img.shape[:2]
    canvas = Image.new("RGB", (w + 2 * border, h + 2 * border), colour)
    canvas.paste(Image.fromarray(img), (border, border))
    return canvas


def ranked_list_grid(
    query_images: np.ndarray,
    gallery_images: np.ndarray,
    dist: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    topk: int = 10,
    ignore_same_camera: bool = True,
) -> Image.Image:
    """One row per query: the query (grey frame) then its ``topk`` nearest gallery images.

    ``query_images`` [Q,H,W,3] and ``gallery_images`` [G,H,W,3] are uint8; ``dist`` is [Q, G].
    Gallery images of the query's identity seen by the query's camera are skipped (the Market
    protocol) when ``ignore_same_camera``. True matches are framed green, others red.
    """
    border, gap = 3, 8
    h, w = query_images.shape[1:3]
    cell_w, cell_h = w + 2 * border, h + 2 * border
    rows = len(query_images)
    grid = Image.new("RGB", ((topk + 1) * cell_w + gap + topk * 2, rows * (cell_h + 4)), WHITE)
    draw = ImageDraw.Draw(grid)
    for r in range(rows):
        y = r * (cell_h + 4)
        grid.paste(_framed(query_images[r], GREY, border), (0, y))
        order = np.argsort(dist[r], kind="stable")
        if ignore_same_camera:
            keep = ~((g_pids[order] == q_pids[r]) & (g_camids[order] == q_camids[r]))
            order = order[keep]
        for k, g in enumerate(order[:topk]):
            colour = GREEN if g_pids[g] == q_pids[r] else RED
            x = cell_w + gap + k * (cell_w + 2)
            grid.paste(_framed(gallery_images[g], colour, border), (x, y))
        draw.line([(cell_w + gap // 2, y), (cell_w + gap // 2, y + cell_h)], fill=GREY, width=1)
    return grid


def save_ranked_lists(path: str | Path, *args, **kwargs) -> Path:
    """:func:`ranked_list_grid` saved as an image file (PNG/JPEG by extension)."""
    path = Path(path)
    grid = ranked_list_grid(*args, **kwargs)
    with atomic_file(path) as tmp:
        grid.save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
    return path


def ranked_list_figure(evaluator: Evaluator, path: str, num_queries: int = 20, topk: int = 10) -> str:
    """Save the first draw's ranked lists of ``num_queries`` evenly spaced queries of ``evaluator``
    (after its ``evaluate()``: its features are reused) as an image; returns ``path``."""
    feats = evaluator.last_features
    if feats is None:
        raise RuntimeError("call evaluate() first")
    query, gallery = evaluator.draws[0]
    pick = np.linspace(0, len(query) - 1, num=min(num_queries, len(query))).astype(int)
    qi = [evaluator.index[query[i]] for i in pick]
    gi = [evaluator.index[s] for s in gallery]
    dist = evaluator.distances(feats[qi].to(evaluator.device), feats[gi].to(evaluator.device))
    images = evaluator.images
    save_ranked_lists(
        path, images[qi], images[gi], dist.cpu().numpy(),
        np.array([query[i].pid for i in pick]), np.array([s.pid for s in gallery]),
        np.array([query[i].camid for i in pick]), np.array([s.camid for s in gallery]),
        topk=topk, ignore_same_camera=evaluator.protocol.cross_camera,
    )
    return path
