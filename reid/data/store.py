"""Decoded uint8 image stores: every image decoded and resized once, memory-mapped from disk.

A store is ``<cache_dir>/<kind>-<key>.npy`` where ``key`` hashes the file list, the files' sizes
and modification times, the target size and the interpolation; it is built once (thread pool of
PIL decoders, tqdm progress bar), written atomically (:func:`reid.atomic_io.atomic_file`; the
temporary files of builders that were killed are removed by the next build in the folder), and
reused across epochs and runs.
A mask store may leave samples out (path ``None``): their entry is all zero (background).
"""
from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from reid.atomic_io import atomic_file, make_folder, remove_stale_temporaries
from reid.registry import suggestion

from .datasets.base import DatasetError

INTERPOLATIONS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
    "box": Image.BOX,
}
STORE_VERSION = 1
#: Images whose aspect ratio differs from the stored size's by more than this factor are counted
#: (and the count logged) when a store is built: resizing stretches them.
STRETCH_LIMIT = 2.0
log = logging.getLogger("reid")


def store_key(paths: Sequence[str | None], size: tuple[int, int], interpolation: str, kind: str) -> str:
    """Hash of (files, their sizes and mtimes, size, interpolation, kind); ``None`` entries count."""
    h = hashlib.sha1(f"{STORE_VERSION}|{kind}|{size[0]}x{size[1]}|{interpolation}|{len(paths)}".encode())
    for p in paths:
        if p is None:
            h.update(b"\n-")
            continue
        try:
            st = os.stat(p)
        except OSError as exc:
            raise DatasetError(f"{p}: cannot read image file ({exc.strerror})") from None
        h.update(f"\n{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def resized_uint8(im: Image.Image, size: tuple[int, int], resample: int, rgb: bool = True) -> np.ndarray:
    """uint8 [H, W, 3] of ``im`` at ``size`` (H, W) (``rgb=False``: ``im`` as it is, e.g. a label
    map [H, W]), resized with ``resample`` only when its size differs: the one decoding rule of the
    test images (the store's and :mod:`reid.inference`'s)."""
    if rgb:
        im = im.convert("RGB")
    if im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), resample)
    return np.asarray(im, dtype=np.uint8)


def _decode(path: str, size: tuple[int, int], resample: int, mode: str,
            original: np.ndarray | None = None, i: int = 0) -> np.ndarray:
    """The image at ``path`` resized to ``size`` (H, W); ``original[i]`` receives its (H, W)."""
    try:
        with Image.open(path) as im:
            if original is not None:
                original[i] = (im.size[1], im.size[0])
            if mode == "L":  # label map: keep the label values
                im = im if im.mode in ("L", "P") else im.convert("L")
            return resized_uint8(im, size, resample, rgb=mode != "L")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: cannot decode image ({exc})") from None


def _build(paths: Sequence[str | None], size: tuple[int, int], cache_dir: str | os.PathLike, workers: int,
           interpolation: str, kind: str) -> np.ndarray:
    if interpolation not in INTERPOLATIONS:
        raise DatasetError(f"unknown interpolation '{interpolation}'{suggestion(str(interpolation), INTERPOLATIONS)}")
    size = (int(size[0]), int(size[1]))
    paths = [str(p) if p is not None else None for p in paths]
    mode = "L" if kind == "masks" else "RGB"
    shape = (len(paths), *size) + (() if mode == "L" else (3,))
    cache = make_folder(cache_dir, "data.cache_dir")
    remove_stale_temporaries(cache)
    target = cache / f"{kind}-{store_key(paths, size, interpolation, kind)}.npy"
    if target.is_file():
        try:
            arr = np.load(target, mmap_mode="r")
            if arr.shape == shape and arr.dtype == np.uint8:
                return arr
        except (OSError, ValueError):
            pass  # a damaged store is rebuilt
    resample = INTERPOLATIONS[interpolation]
    original = np.zeros((len(paths), 2), dtype=np.int64) if kind == "images" else None
    with atomic_file(target, "cannot write the image store") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)

        def work(i: int) -> None:
            out[i] = _decode(paths[i], size, resample, mode, original, i) if paths[i] is not None else 0

        with ThreadPoolExecutor(max(1, int(workers))) as pool:
            list(tqdm(pool.map(work, range(len(paths))), total=len(paths), leave=False,
                      desc=f"decoding {len(paths)} {kind} to {size[0]}x{size[1]}", dynamic_ncols=True,
                      disable=len(paths) < 256))
        out.flush()
    if original is not None:
        log_stretched(original, size)
    return np.load(target, mmap_mode="r")


def stretched(original: np.ndarray, size: tuple[int, int], limit: float = STRETCH_LIMIT) -> int:
    """How many images of sizes ``original`` [N, 2] (H, W) have an aspect ratio (W / H) more than
    ``limit`` times larger or smaller than that of ``size`` (H, W)."""
    h, w = original[:, 0].astype(np.float64), original[:, 1].astype(np.float64)
    ratio = (w / np.maximum(h, 1)) / (size[1] / size[0])
    return int(((ratio > limit) | (ratio < 1 / limit)).sum())


def log_stretched(original: np.ndarray, size: tuple[int, int]) -> int:
    """Log (once, when a store is built) how many images resizing to ``size`` stretches by more
    than :data:`STRETCH_LIMIT`; returns the count."""
    count = stretched(original, size)
    if count:
        log.info(f"images: {count} of {len(original)} have an aspect ratio more than {STRETCH_LIMIT:g}x "
                 f"from that of {size[0]}x{size[1]} (H x W) and are stretched to it")
    return count


def build_image_store(
    paths: Sequence[str],
    size: tuple[int, int],
    cache_dir: str | os.PathLike,
    workers: int = 4,
    interpolation: str = "bilinear",
    masks: Sequence[str | None] | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Images as a read-only memory-mapped uint8 array [N, H, W, 3] (``size`` = (H, W)).

    With ``masks`` (label-map files parallel to ``paths``; ``None`` for a sample without one) returns
    ``(images, masks)`` where masks is [N, H, W] uint8 resized with nearest neighbour, all zero for
    a ``None`` entry (:func:`mask_valid` gives the flags). An unreadable file is a DatasetError naming it.
    """
    images = _build(paths, size, cache_dir, workers, interpolation, "images")
    if masks is None:
        return images
    if len(masks) != len(paths):
        raise ValueError(f"{len(masks)} mask files for {len(paths)} images")
    return images, _build(masks, size, cache_dir, workers, "nearest", "masks")


def mask_valid(masks: Sequence[str | None]) -> np.ndarray:
    """bool [N]: which entries of a mask store's file list have a mask (not ``None``)."""
    return np.array([m is not None for m in masks], dtype=bool)
