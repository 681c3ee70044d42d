"""Features of many image files (chunked, unreadable files skipped and reported) and their
``.npz`` files: ``features`` float32 [N, D], ``paths`` [N] (str), and ``pids``, ``camids`` [N]
(int64) where known."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from reid.atomic_io import atomic_write, os_errors
from reid.registry import UserError

from .extractor import FeatureExtractor
from .images import read_images


class FeatureFileError(UserError, ValueError):
    """A features file that is missing or lacks ``features`` / ``paths``."""


def extract_files(extractor: FeatureExtractor, paths: Sequence[str], chunk: int | None = None,
                  progress: bool = True) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    """(features [N_ok, D], indices of the files read, [(path, reason)] of the unreadable ones) of
    image files ``paths``, decoded ``chunk`` (default: the extractor's batch size) at a time, so
    memory holds one chunk of images; a tqdm bar counts images."""
    chunk = int(chunk or extractor.batch_size)
    feats: list[torch.Tensor] = []
    kept: list[int] = []
    failed: list[tuple[str, str]] = []
    with tqdm(total=len(paths), desc="images", unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), chunk):
            part = paths[start:start + chunk]
            images, ok, bad = read_images(part, extractor.size, extractor.interpolation)
            failed += bad
            if ok:
                feats.append(extractor.features(images))
                kept += [start + i for i in ok]
            bar.update(len(part))
            if bad:
                bar.set_postfix(unreadable=len(failed))
    if not feats:
        return torch.zeros(0, 0), kept, failed
    return torch.cat(feats), kept, failed


def save_features(path: str | os.PathLike, features: Any, paths: Sequence[str], pids: Any = None,
                  camids: Any = None, contract: dict | None = None) -> Path:
    """Write a features ``.npz`` atomically (``pids`` / ``camids`` only when given; ``contract``,
    the model's :func:`reid.inference.loading.feature_contract`, as a JSON string)."""
    data: dict[str, np.ndarray] = {"features": np.asarray(features, dtype=np.float32),
                                   "paths": np.asarray([str(p) for p in paths], dtype=str)}
    if pids is not None:
        data["pids"] = np.asarray(pids, dtype=np.int64)
    if camids is not None:
        data["camids"] = np.asarray(camids, dtype=np.int64)
    if contract is not None:
        data["contract"] = np.asarray(json.dumps(contract))
    path = Path(path)
    atomic_write(path, lambda f: np.savez(f, **data))
    return path


def load_features(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a features ``.npz`` written by :func:`save_features`."""
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"{path}: features file not found")
    with os_errors(path, "cannot read the features file"), np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    missing = [k for k in ("features", "paths") if k not in data]
    if missing:
        raise FeatureFileError(f"{path}: not a features file (no {', '.join(missing)}); "
                               "write one with tools/extract.py")
    return data
