"""CUHK03: new protocol on the real protocol files, .mat extraction, classic splits, CUHK03-NP."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import reid.data.datasets  # noqa: F401
from reid.data.datasets import DatasetError
from reid.data.datasets.cuhk03 import DONE, _strings, protocol_name
from reid.registry import DATASETS
from reid.testing.replicas import write_replica

pytest.importorskip("scipy")
pytest.importorskip("h5py")

# What ../shared/data/cuhk03-protocol gives: (train ids, images), (query ...), (gallery ...).
REAL = {
    "detected": {"train": (767, 7365), "query": (700, 1400), "gallery": (700, 5332)},
    "labeled": {"train": (767, 7368), "query": (700, 1400), "gallery": (700, 5328)},
}


def pre_extracted(root, protocol_dir, kinds=("labeled", "detected")):
    """Copy the real protocol files and stand in for the extracted images (placeholders)."""
    import scipy.io as sio

    (root / "cuhk03_release").mkdir(parents=True)
    (root / "cuhk03_release" / "cuhk-03.mat").touch()
    for kind in kinds:
        shutil.copy(protocol_dir / protocol_name(kind), root)
        names = _strings(sio.loadmat(str(protocol_dir / protocol_name(kind)), variable_names=["filelist"])["filelist"])
        out = root / "cuhk03_release" / f"images_{kind}"
        out.mkdir()
        for name in names:
            (out / name).touch()
        (out / DONE).touch()
    return root


@pytest.mark.parametrize("kind", ["detected", "labeled"])
def test_new_protocol_counts_on_real_protocol_files(kind, cuhk03_protocol, tmp_path):
    root = pre_extracted(tmp_path, cuhk03_protocol, (kind,))
    ds = DATASETS.build(f"cuhk03_{kind}", root=str(root), source="mat")
    stats = ds.stats()
    assert {k: (v["ids"], v["images"]) for k, v in stats.items()} == REAL[kind]
    assert all(v["cameras"] == 2 for v in stats.values())
    assert ds.protocol == "market"
    assert sorted({s.pid for s in ds.train}) == list(range(767))
    assert {s.pid for s in ds.query} == {s.pid for s in ds.gallery}
    # each query has a gallery match in the other camera
    gallery = {(s.pid, s.camid) for s in ds.gallery}
    assert all((q.pid, 1 - q.camid) in gallery for q in ds.query)


def test_image_named_in_protocol_but_absent(cuhk03_protocol, tmp_path):
    root = pre_extracted(tmp_path, cuhk03_protocol, ("detected",))
    (root / "cuhk03_release" / "images_detected" / "1_001_1_01.png").unlink()
    with pytest.raises(DatasetError, match=r"cuhk03_new_protocol_config_detected\.mat.*1_001_1_01\.png"):
        DATASETS.build("cuhk03_detected", root=str(root))


@pytest.fixture(scope="module")
def mat_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuhk03mat")
    write_replica("cuhk03_mat", root, seed=5, scale=0.02, images="render", size=(16, 8))
    return root


def test_mat_route_extracts_once_and_splits(mat_root):
    import scipy.io as sio

    ds = DATASETS.build("cuhk03_labeled", root=str(mat_root))
    cfg = sio.loadmat(str(mat_root / protocol_name("labeled")))
    assert len(ds.train) == cfg["train_idx"].size and len(ds.gallery) == cfg["gallery_idx"].size
    assert len(ds.query) == cfg["query_idx"].size
    img = np.asarray(Image.open(ds.train[0].path))
    assert img.shape == (16, 8, 3) and img.std() > 0
    folder = mat_root / "cuhk03_release" / "images_labeled"
    marker = (folder / DONE).stat().st_mtime_ns
    again = DATASETS.build("cuhk03_labeled", root=str(mat_root), source="mat")
    assert (folder / DONE).stat().st_mtime_ns == marker and again.stats() == ds.stats()
    det = DATASETS.build("cuhk03_detected", root=str(mat_root))
    assert "images_detected" in det.query[0].path


def test_classic_splits(mat_root):
    ds0 = DATASETS.build("cuhk03_detected", root=str(mat_root), classic=True, split_id=0)
    ds1 = DATASETS.build("cuhk03_detected", root=str(mat_root), classic=True, split_id=1)
    assert ds0.protocol == "cuhk03" and ds0.query == ds0.gallery
    n_test = ds0.stats()["query"]["ids"]
    assert n_test == 2  # 100 test ids scaled by 0.02
    assert {s.pid for s in ds0.query} != {s.pid for s in ds1.query}
    assert len(ds0.train) + len(ds0.query) == len(ds1.train) + len(ds1.query)
    with pytest.raises(DatasetError, match="split_id must be in 0..19"):
        DATASETS.build("cuhk03_detected", root=str(mat_root), classic=True, split_id=20)


def test_np_folders(tmp_path):
    write_replica("cuhk03_labeled", tmp_path, seed=1, scale=0.02, images="flat", size=(8, 4))
    ds = DATASETS.build("cuhk03_labeled", root=str(tmp_path))
    assert ds.root.endswith("cuhk03-np/labeled") and ds.train[0].path.endswith(".png")
    with pytest.raises(DatasetError, match="cuhk-03.mat"):
        DATASETS.build("cuhk03_labeled", root=str(tmp_path), source="mat")
    with pytest.raises(DatasetError, match="classic protocol needs"):
        DATASETS.build("cuhk03_labeled", root=str(tmp_path), source="np", classic=True)


def test_missing_optional_reader_names_the_extra(cuhk03_protocol, tmp_path, monkeypatch):
    root = pre_extracted(tmp_path, cuhk03_protocol, ("labeled",))
    shutil.rmtree(root / "cuhk03_release" / "images_labeled")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(DatasetError, match=r"pip install reid\[mat\]"):
        DATASETS.build("cuhk03_labeled", root=str(root))
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(DatasetError, match=r"'scipy'.*pip install reid\[mat\]"):
        DATASETS.build("cuhk03_labeled", root=str(root))


@pytest.fixture
def ram_path(tmp_path):
    """A scratch folder in RAM (/dev/shm) where available: 14,000 small files are slow on disk."""
    shm = Path("/dev/shm")
    if not os.access(shm, os.W_OK):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="reid-cuhk03-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_mat_route_real_counts_end_to_end(cuhk03_protocol, ram_path):
    """cuhk-03.mat replica holding an image for every name of the real detected protocol file."""
    from reid.testing.replicas import cuhk03_mat_from_protocol

    tmp_path = ram_path

    cuhk03_mat_from_protocol(tmp_path, cuhk03_protocol, images="flat", size=(8, 4), kinds=("detected",))
    ds = DATASETS.build("cuhk03_detected", root=str(tmp_path), source="mat")
    assert {k: (v["ids"], v["images"]) for k, v in ds.stats().items()} == REAL["detected"]
    assert np.asarray(Image.open(ds.gallery[-1].path)).shape == (8, 4, 3)
    classic = DATASETS.build("cuhk03_detected", root=str(tmp_path), classic=True, split_id=19)
    assert classic.stats()["query"]["ids"] == 100 and classic.stats()["train"]["ids"] == 1367
