"""Images for inference: finding them in folders and decoding them exactly as the test store does
(RGB, resized to ``input.size`` with ``input.interpolation`` when the size differs, uint8)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from reid.atomic_io import os_errors
from reid.data.store import INTERPOLATIONS, resized_uint8

#: File endings read as images (case-insensitive); anything PIL decodes in practice.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


def list_images(folder: str | os.PathLike) -> list[str]:
    """Every image file under ``folder`` (recursive, by extension), sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    with os_errors(root, "cannot read the folder"):
        os.listdir(root)  # an unreadable folder is an error, not an empty one
        return sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def resize_uint8(image: Image.Image | np.ndarray, size: Sequence[int], interpolation: str = "bilinear") -> np.ndarray:
    """uint8 [H, W, 3] of a PIL image or uint8 [h, w, 3] array at ``size`` (H, W), resized with
    ``interpolation`` only when its size differs (what the test image store does)."""
    im = Image.fromarray(np.asarray(image, dtype=np.uint8)) if isinstance(image, np.ndarray) else image
    return resized_uint8(im, (int(size[0]), int(size[1])), INTERPOLATIONS[interpolation])


def read_image(path: str | os.PathLike, size: Sequence[int], interpolation: str = "bilinear") -> np.ndarray:
    """The image file at ``path`` as uint8 [H, W, 3] at ``size``; OSError/ValueError when unreadable."""
    with Image.open(path) as im:
        return resize_uint8(im, size, interpolation)


def read_images(paths: Iterable[Any], size: Sequence[int], interpolation: str = "bilinear"
                ) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """(uint8 [N_ok, H, W, 3], indices of the readable ``paths``, [(path, reason)] of the others)."""
    images, ok, failed = [], [], []
    for i, p in enumerate(paths):
        try:
            images.append(read_image(p, size, interpolation))
            ok.append(i)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            failed.append((str(p), str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    arr = np.stack(images) if images else np.zeros((0, int(size[0]), int(size[1]), 3), np.uint8)
    return arr, ok, failed
