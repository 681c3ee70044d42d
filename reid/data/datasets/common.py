"""Helpers shared by the data set parsers: locating folders, checking files, seeded hold-outs."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from reid.data.protocols import PROTOCOLS
from reid.registry import ConfigError, suggestion

from .base import DatasetError, ReidDataset, Sample, relabel

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
        raise DatasetError(f"{what}: data root not found: {root}; {hint}")
    for cand in candidates:
        path = root / cand if cand else root
        if path.is_dir():
            return path
    tried = ", ".join(str(root / c) if c else str(root) for c in candidates)
    raise DatasetError(f"{what}: expected folder not found under {root} (tried {tried}); {hint}")


def require_file(path: Path, what: str, hint: str) -> Path:
    """Return ``path`` if it is a file, else raise a DatasetError naming it."""
    if not path.is_file():
        raise DatasetError(f"{what}: file not found: {path}; {hint}")
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


# ----------------------------------------------------------------- data sets described without code

#: The three splits of a data set described by folders or a CSV file (``folder``, ``csv``).
SPLITS = ("train", "query", "gallery")


def check_shared_keys(protocol: str, junk_pids: Sequence[int], distractor_pids: Sequence[int],
                      camid_base: int) -> tuple[str, set[int], set[int]]:
    """Checks of the keywords shared by ``folder`` and ``csv``, before any file is read: a
    ConfigError naming ``dataset.<key>``. Returns ``(protocol name, junk ids, distractor ids)``."""
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:
        raise ConfigError(f"dataset.protocol: unknown evaluation protocol {protocol!r}"
                          f"{suggestion(str(protocol), PROTOCOLS.names())}")
    ids = {}
    for key, value in (("junk_pids", junk_pids), ("distractor_pids", distractor_pids)):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in value):
            raise ConfigError(f"dataset.{key}: expected a list of integer identities, got {value!r}")
        ids[key] = set(value)
    if not isinstance(camid_base, int) or isinstance(camid_base, bool):
        raise ConfigError(f"dataset.camid_base: expected an integer (the first camera's number), got {camid_base!r}")
    return protocol, ids["junk_pids"], ids["distractor_pids"]


def keep_sample(pid: int, split: str, junk: set[int], distractors: set[int]) -> bool:
    """Market-1501's rules: ``junk`` identities are dropped from every split, ``distractors`` are
    kept in the gallery only."""
    return pid not in junk and (split == "gallery" or pid not in distractors)


def camera_id(raw: int, camid_base: int, source: str) -> int:
    """The 0-based camera of an image whose camera is numbered ``raw`` on disk (cameras counted
    from ``camid_base``); a DatasetError naming ``source`` when ``raw`` is below the base."""
    if raw < camid_base:
        raise DatasetError(f"{source}: camera {raw} is below dataset.camid_base = {camid_base}; expected "
                           f"cameras numbered from {camid_base} (set dataset.camid_base for another numbering)")
    return raw - camid_base


def unmatched_queries(query: Sequence[Sample], gallery: Sequence[Sample]) -> tuple[int, int]:
    """``(identities, images)`` of the query whose identity has no gallery image: the metrics skip
    those queries (Market-1501's own test split has 4 such identities in the mini set)."""
    gallery_ids = {s.pid for s in gallery}
    lone = [s for s in query if s.pid not in gallery_ids]
    return len({s.pid for s in lone}), len(lone)


def splits_dataset(name: str, splits: dict[str, list[Sample]], protocol: str, root: str,
                   where: dict[str, str]) -> ReidDataset:
    """A :class:`ReidDataset` of ``splits`` (``train``/``query``/``gallery``, original ids): an empty
    split is a DatasetError naming ``where[split]``; query identities absent from the gallery are a
    counted warning; train is relabelled."""
    for split in SPLITS:
        if not splits[split]:
            raise DatasetError(f"{name}: no {split} image in {where[split]} (junk identities dropped); "
                               f"expected at least one")
    ids, images = unmatched_queries(splits["query"], splits["gallery"])
    if ids:
        logging.getLogger("reid").warning(
            f"{name}: {ids} of {len({s.pid for s in splits['query']})} query identities ({images} query images) "
            "have no gallery image; the metrics skip those queries")
    return ReidDataset(name, relabel(splits["train"]), splits["query"], splits["gallery"], protocol=protocol,
                       root=root)
