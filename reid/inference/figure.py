"""The search result figure: each query beside its top-k gallery images with their distances."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from reid.atomic_io import atomic_file

from .images import read_image

GREY, BLUE, WHITE, BLACK = (150, 150, 150), (60, 110, 200), (255, 255, 255), (0, 0, 0)


def _cell(path: str, size: Sequence[int], colour: tuple[int, int, int], border: int) -> Image.Image:
    h, w = int(size[0]), int(size[1])
    try:
        img = Image.fromarray(read_image(path, size))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # e.g. moved or huge files
        img = Image.new("RGB", (w, h), (220, 220, 220))
        ImageDraw.Draw(img).line([(0, 0), (w, h)], fill=GREY)
    canvas = Image.new("RGB", (w + 2 * border, h + 2 * border), colour)
    canvas.paste(img, (border, border))
    return canvas


def search_figure(path: str | os.PathLike, queries: Sequence[str], gallery_paths: Sequence[str], indices: np.ndarray,
                  distances: np.ndarray, size: Sequence[int] = (128, 64)) -> Path:
    """One row per query (grey frame) followed by its ranked gallery images (blue frames), each
    labelled with its rank and distance; images at ``size`` (H, W). Written with PIL (PNG/JPEG
    by extension); returns ``path``."""
    border, gap, label = 2, 10, 12
    h, w = int(size[0]), int(size[1])
    cw, ch = w + 2 * border, h + 2 * border + label
    k = indices.shape[1] if len(indices) else 0
    grid = Image.new("RGB", (cw * (k + 1) + gap + 2 * k, max(1, len(queries)) * (ch + 4)), WHITE)
    draw = ImageDraw.Draw(grid)
    for r, query in enumerate(queries):
        y = r * (ch + 4)
        grid.paste(_cell(query, size, GREY, border), (0, y))
        draw.text((2, y + h + 2 * border), "query", fill=BLACK)
        for j in range(k):
            x = cw + gap + j * (cw + 2)
            grid.paste(_cell(gallery_paths[int(indices[r, j])], size, BLUE, border), (x, y))
            draw.text((x + 1, y + h + 2 * border), f"{j + 1}:{distances[r, j]:.2f}", fill=BLACK)
    path = Path(path)
    with atomic_file(path) as tmp:  # PNG/JPEG/... by the extension of path
        grid.save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
    return path
