"""CUHK03 labeled / detected, from either of its two distributions.

(a) CUHK03-NP: ``cuhk03-np/{labeled,detected}/{bounding_box_train,query,bounding_box_test}/*.png``
with Market-style names (``0001_c1_1.png``), read like Market-1501.
(b) The original ``cuhk03_release/cuhk-03.mat`` (MATLAB v7.3 = HDF5: ``labeled``/``detected`` cells
over 5 camera pairs, ``testsets``) plus ``cuhk03_new_protocol_config_{labeled,detected}.mat`` (v5,
scipy): images are extracted once to ``cuhk03_release/images_<kind>/<pair>_<pid>_<view>_<n>.png``
and split by the new protocol (767/700 ids), or with ``classic=True`` by split ``split_id`` of the
20 classic test sets (100 test ids; query = gallery = the test images; protocol ``cuhk03``).
Both folders may sit directly under the data root or under ``<root>/cuhk03/``.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from reid.atomic_io import temporary_folder
from reid.checks import Count
from reid.registry import DATASETS, suggestion

from .base import DatasetError, ReidDataset, Sample, relabel
from .common import FileIndex, list_images, require_file, require_optional
from .market import read_market_layout

NP_DIR = "cuhk03-np"
RELEASE_DIR = "cuhk03_release"
MAT_NAME = "cuhk-03.mat"
NP_PATTERN = re.compile(r"(?P<pid>-?\d{1,8})_c(?P<cam>\d{1,3})(?:_\w+)?", re.ASCII)
NP_FORMAT = "PPPP_cC_N.png (e.g. 0001_c1_1.png)"
MAT_NAME_RE = re.compile(r"^(?P<pair>\d)_(?P<pid>\d{3})_(?P<view>\d)_(?P<n>\d{2})\.png$", re.ASCII)
DONE = ".extracted"
Source = Literal["auto", "np", "mat"]
SOURCES = get_args(Source)
#: Published split sizes (ids, images, cameras); train includes validation images. See docs/datasets.md.
#: New protocol; CUHK03-NP and the real cuhk03_new_protocol_config_*.mat files give the same numbers.
PUBLISHED = {
    "cuhk03_labeled": {"train": (767, 7368, 2), "query": (700, 1400, 2), "gallery": (700, 5328, 2)},
    "cuhk03_detected": {"train": (767, 7365, 2), "query": (700, 1400, 2), "gallery": (700, 5332, 2)},
}
HINT = (
    "CUHK03: expected <root>/cuhk03-np/{labeled,detected}/{bounding_box_train,query,bounding_box_test}/ "
    "(CUHK03-NP, https://github.com/zhunzhong07/person-re-ranking/tree/master/evaluation/data/CUHK03) "
    "or <root>/cuhk03_release/cuhk-03.mat (https://www.ee.cuhk.edu.hk/~xgwang/CUHK_identification.html) "
    "with cuhk03_new_protocol_config_{labeled,detected}.mat beside cuhk03_release/ "
    "(optionally all under <root>/cuhk03/); see docs/datasets.md"
)


def protocol_name(kind: str) -> str:
    return f"cuhk03_new_protocol_config_{kind}.mat"


def image_name(pair: int, pid: int, view: int, n: int) -> str:
    """``<pair>_<pid:03d>_<view>_<n:02d>.png``; all 1-based (the protocol files' names)."""
    return f"{pair}_{pid:03d}_{view}_{n:02d}.png"


def _base(root: str) -> Path:
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise DatasetError(f"CUHK03: data root not found: {root_path}; {HINT}")
    for cand in (root_path / "cuhk03", root_path):
        if (cand / NP_DIR).is_dir() or (cand / RELEASE_DIR).is_dir():
            return cand
    raise DatasetError(f"CUHK03: neither {NP_DIR}/ nor {RELEASE_DIR}/ found under {root_path}; {HINT}")


def extract_images(mat_path: Path, kind: str, out: Path) -> Path:
    """Write every ``kind`` image of ``cuhk-03.mat`` to ``out/<pair>_<pid>_<view>_<n>.png`` once."""
    if (out / DONE).is_file():
        return out
    h5py = require_optional("h5py")
    from PIL import Image

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_folder(out)  # a killed extraction's is removed first
    except OSError as exc:
        raise DatasetError(f"CUHK03: cannot extract images of {mat_path} to {out} (needs write access): {exc}") from exc
    try:
        try:
            f = h5py.File(mat_path, "r")
        except OSError as exc:
            raise DatasetError(f"{mat_path}: cannot read as MATLAB v7.3 (HDF5): {exc}") from exc
        with f:
            if kind not in f:
                raise DatasetError(f"{mat_path}: expected a '{kind}' cell array (keys: {', '.join(f.keys())})")
            for p, pair_ref in enumerate(f[kind][0]):
                cells = f[pair_ref][()].T  # [num_pids, 10] object references
                for pid in range(cells.shape[0]):
                    for n, ref in enumerate(cells[pid]):
                        img = f[ref][()].T
                        if img.ndim < 3 or img.size == 0:
                            continue
                        name = image_name(p + 1, pid + 1, 1 if n < 5 else 2, n + 1)
                        Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).save(tmp / name)
        (tmp / DONE).write_text(str(mat_path))
        try:
            os.rename(tmp, out)
        except OSError:  # an earlier partial extraction or a concurrent one
            if not (out / DONE).is_file():
                shutil.rmtree(out, ignore_errors=True)
                os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _strings(arr) -> list[str]:
    return [str(np.asarray(v).squeeze()) for v in np.asarray(arr).ravel()]


def read_new_protocol(config_path: Path, image_dir: Path, name: str, kind: str) -> ReidDataset:
    """Split the extracted images by a ``cuhk03_new_protocol_config_*.mat`` file."""
    sio = require_optional("scipy.io")
    try:
        cfg = sio.loadmat(str(config_path))
    except Exception as exc:  # scipy raises several types for non-MAT input
        raise DatasetError(f"{config_path}: cannot read as a MATLAB file: {exc}") from exc
    keys = ("filelist", "labels", "camId", "train_idx", "query_idx", "gallery_idx")
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise DatasetError(f"{config_path}: expected fields {', '.join(keys)}; missing {', '.join(missing)}")
    names = _strings(cfg["filelist"])
    labels = np.asarray(cfg["labels"]).ravel().astype(np.int64)
    cams = np.asarray(cfg["camId"]).ravel().astype(np.int64)
    if not (len(names) == len(labels) == len(cams)):
        raise DatasetError(f"{config_path}: filelist, labels and camId differ in length")
    index = FileIndex()
    splits = {}
    for split in ("train", "query", "gallery"):
        idx = np.asarray(cfg[f"{split}_idx"]).ravel().astype(np.int64) - 1
        if idx.size and (idx.min() < 0 or idx.max() >= len(names)):
            raise DatasetError(f"{config_path}: {split}_idx out of range 1..{len(names)}")
        samples = []
        for i in idx:
            path = image_dir / names[i]
            index.require(path, config_path, f"image '{names[i]}'")
            samples.append(Sample(str(path), int(labels[i]), int(cams[i]) - 1))
        splits[split] = samples
    return ReidDataset(name, relabel(splits["train"]), splits["query"], splits["gallery"], protocol="market",
                       root=str(image_dir))


def read_classic(mat_path: Path, image_dir: Path, name: str, split_id: int) -> ReidDataset:
    """Classic protocol: test ids from ``testsets{split_id}`` ([pair, pid] rows); query = gallery."""
    h5py = require_optional("h5py")
    with h5py.File(mat_path, "r") as f:
        if "testsets" not in f:
            raise DatasetError(f"{mat_path}: expected a 'testsets' cell array for the classic protocol")
        refs = f["testsets"][0]
        if not 0 <= split_id < len(refs):
            raise DatasetError(f"{name}: split_id must be in 0..{len(refs) - 1}, got {split_id}")
        test = {(int(a), int(b)) for a, b in f[refs[split_id]][()].T}
    train, test_samples = [], []
    for fname in list_images(image_dir):
        m = MAT_NAME_RE.match(fname)
        if m is None:
            continue
        pair, pid, view = int(m["pair"]), int(m["pid"]), int(m["view"])
        sample = Sample(str(image_dir / fname), pair * 1000 + pid, view - 1)
        (test_samples if (pair, pid) in test else train).append(sample)
    return ReidDataset(name, relabel(train), test_samples, list(test_samples), protocol="cuhk03",
                       root=str(image_dir))


def load_cuhk03(kind: str, root: str, source: str, classic: bool, split_id: int) -> ReidDataset:
    name = f"cuhk03_{kind}"
    if source not in SOURCES:
        raise DatasetError(f"{name}: unknown source '{source}'{suggestion(str(source), SOURCES)}")
    base = _base(root)
    np_dir = base / NP_DIR / kind
    if source == "np" or (source == "auto" and not classic and np_dir.is_dir()):
        if classic:
            raise DatasetError(f"{name}: the classic protocol needs {RELEASE_DIR}/{MAT_NAME} (source: mat)")
        if not np_dir.is_dir():
            raise DatasetError(f"{name}: folder not found: {np_dir}; {HINT}")
        return read_market_layout(np_dir, name, HINT, NP_PATTERN, NP_FORMAT, cameras=2)
    mat_path = require_file(base / RELEASE_DIR / MAT_NAME, name, HINT)
    if classic:
        images = extract_images(mat_path, kind, base / RELEASE_DIR / f"images_{kind}")
        return read_classic(mat_path, images, name, split_id)
    cands = [base / protocol_name(kind), base / RELEASE_DIR / protocol_name(kind)]
    config = next((c for c in cands if c.is_file()), None)
    if config is None:
        raise DatasetError(f"{name}: protocol file not found (tried {', '.join(map(str, cands))}); {HINT}")
    require_optional("scipy.io")
    images = extract_images(mat_path, kind, base / RELEASE_DIR / f"images_{kind}")
    return read_new_protocol(config, images, name, kind)


@DATASETS.register("cuhk03_labeled")
def cuhk03_labeled(root: str = "datasets", source: Source = "auto", classic: bool = False,
                   split_id: Count = 0) -> ReidDataset:
    """CUHK03 labeled boxes; ``source``: ``auto`` (CUHK03-NP if present), ``np`` or ``mat``."""
    return load_cuhk03("labeled", root, source, classic, split_id)


@DATASETS.register("cuhk03_detected")
def cuhk03_detected(root: str = "datasets", source: Source = "auto", classic: bool = False,
                    split_id: Count = 0) -> ReidDataset:
    """CUHK03 detected boxes; ``source``: ``auto`` (CUHK03-NP if present), ``np`` or ``mat``."""
    return load_cuhk03("detected", root, source, classic, split_id)
