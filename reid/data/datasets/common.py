"""Helpers shared by the data set parsers: locating folders, checking files, seeded hold-outs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .base import DatasetError, Sample

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
# Query/gallery camera ids for protocols without cameras (hands): distinct so that a Market-style
# same-camera filter can never remove a true match.
QUERY_CAM, GALLERY_CAM = 0, 1
# Offset added to identities that must never match a query (other sub-sets, extra subjects).
ID_OFFSET = 10**9


def find_dir(root: str | Path, candidates: Sequence[str], what: str, hint: str) -> Path:
    """The first ``root/candidate`` that is a folder, else a DatasetError listing what was tried."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{what}: data root not found: {root}\n{hint}")
    for cand in candidates:
        path = root / cand if cand else root
        if path.is_dir():
            return path
    tried = ", ".join(str(root / c) if c else str(root) for c in candidates)
    raise DatasetError(f"{what}: expected folder not found under {root} (tried {tried})\n{hint}")


def require_file(path: Path, what: str, hint: str) -> Path:
    """Return ``path`` if it is a file, else raise a DatasetError naming it."""
    if not path.is_file():
        raise DatasetError(f"{what}: file not found: {path}\n{hint}")
    return path


class FileIndex:
    """Existence checks against folder listings (one ``scandir`` per folder, cached)."""

    def __init__(self) -> None:
        self._dirs: dict[str, set[str]] = {}

    def exists(self, path: Path | str) -> bool:
        folder, name = os.path.split(str(path))
        names = self._dirs.get(folder)
        if names is None:
            try:
                names = {e.name for e in os.scandir(folder)}
            except (FileNotFoundError, NotADirectoryError):
                names = set()
            self._dirs[folder] = names
        return name in names

    def require(self, path: Path | str, source: Path | str, what: str = "image") -> None:
        if not self.exists(path):
            raise DatasetError(f"{source}: {what} listed there is absent: expected file {path}")


def list_images(folder: Path) -> list[str]:
    """Sorted image file names in ``folder``."""
    return sorted(e.name for e in os.scandir(folder) if e.name.lower().endswith(IMAGE_EXTS) and e.is_file())


def group_by_pid(samples: Iterable[Sample]) -> dict[int, list[Sample]]:
    """Samples per identity, identities in sorted order, samples in input order."""
    out: dict[int, list[Sample]] = {}
    for s in samples:
        out.setdefault(s.pid, []).append(s)
    return dict(sorted(out.items()))


def pick_one_per_id(
    groups: dict[int, list[Sample]], seed: int | Sequence[int]
) -> tuple[list[Sample], list[Sample]]:
    """Seeded: one random sample per identity -> ``(picked, rest)``; identities in sorted order."""
    rng = np.random.default_rng(seed)
    picked, rest = [], []
    for pid in sorted(groups):
        items = groups[pid]
        k = int(rng.integers(len(items)))
        picked.append(items[k])
        rest.extend(s for i, s in enumerate(items) if i != k)
    return picked, rest


def hold_out(groups: dict[int, list[Sample]], seed: int) -> tuple[list[Sample], list[Sample]]:
    """Seeded validation hold-out: one image per identity that has at least two -> ``(val, rest)``."""
    multi = {pid: items for pid, items in groups.items() if len(items) > 1}
    val, rest = pick_one_per_id(multi, seed)
    rest.extend(s for pid, items in groups.items() if len(items) == 1 for s in items)
    return val, sorted(rest, key=lambda s: (s.pid, s.path))


def with_cam(samples: Iterable[Sample], camid: int, offset: int = 0) -> list[Sample]:
    """Copies of ``samples`` with camera ``camid`` and ``offset`` added to the identity."""
    return [Sample(s.path, s.pid + offset, camid, s.mask) for s in samples]


def require_optional(module: str):
    """Import an optional .mat reader (scipy.io / h5py) or raise a DatasetError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DatasetError(
            f"reading MATLAB files needs the optional package '{module.split('.')[0]}': "
            "pip install reid[mat]  (or pip install scipy h5py)"
        ) from exc


def draw_index(dataset) -> tuple[list[Sample], list[dict[str, np.ndarray]]]:
    """Unique images of all of ``dataset.draws`` and, per draw, index arrays into them.

    Returns ``(images, draws)``: extract features once for ``images`` (each path once, camera as in
    its first appearance), then draw ``d`` is ``draws[d]`` = ``{"query", "gallery"}`` (int64 indices
    into ``images``) and ``{"q_pids", "g_pids", "q_camids", "g_camids"}`` (int64) for ``evaluate_rank``.
    """
    pairs = dataset.draws or [(dataset.query, dataset.gallery)]
    where: dict[str, int] = {}
    images: list[Sample] = []
    out = []
    for query, gallery in pairs:
        entry = {}
        for key, split in (("q", query), ("g", gallery)):
            idx = []
            for s in split:
                if s.path not in where:
                    where[s.path] = len(images)
                    images.append(s)
                idx.append(where[s.path])
            entry["query" if key == "q" else "gallery"] = np.asarray(idx, dtype=np.int64)
            entry[f"{key}_pids"] = np.asarray([s.pid for s in split], dtype=np.int64)
            entry[f"{key}_camids"] = np.asarray([s.camid for s in split], dtype=np.int64)
        out.append(entry)
    return images, out
