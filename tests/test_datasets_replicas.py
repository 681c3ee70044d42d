"""Synthetic replicas: seeded, decodable, in every parser's format."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import reid.data.datasets  # noqa: F401
from reid.data.datasets import DatasetError
from reid.data.store import build_image_store
from reid.registry import DATASETS
from reid.testing.replicas import make_hand, render_hand, write_replica


def digest(root: Path) -> str:
    h = hashlib.sha1()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_seeded(tmp_path):
    a = write_replica("hd", tmp_path / "a", seed=4, scale=0.02, size=(16, 16))
    b = write_replica("hd", tmp_path / "b", seed=4, scale=0.02, size=(16, 16))
    c = write_replica("hd", tmp_path / "c", seed=5, scale=0.02, size=(16, 16))
    assert digest(a) == digest(b) != digest(c)


@pytest.mark.parametrize("gen, name", [("dukemtmcreid", "dukemtmcreid"), ("msmt17_v2", "msmt17"),
                                       ("hands11k", "hands11k_dorsal_left"), ("hd", "hd")])
def test_rendered_replica_decodes_through_the_store(gen, name, tmp_path):
    write_replica(gen, tmp_path / "data", seed=0, scale=0.01, size=(16, 8))
    ds = DATASETS.build(name, root=str(tmp_path / "data"))
    samples = ds.train[:8] + ds.query[:4] + ds.gallery[:4]
    images = build_image_store([s.path for s in samples], (16, 8), tmp_path / "store", workers=1)
    assert images.shape == (len(samples), 16, 8, 3) and images.std() > 10
    # every query has a true match in the gallery from another camera (or any camera for hands)
    gallery = {(s.pid, s.camid) for s in ds.gallery}
    assert all(any(p == q.pid and c != q.camid for p, c in gallery) for q in ds.query)


def test_hand_renderer_jitters_each_view():
    rng = np.random.default_rng(0)
    hand = make_hand(rng)
    a, b = render_hand(hand, rng, (32, 32)), render_hand(hand, rng, (32, 32))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8 and a.std() > 5
    assert np.abs(a.astype(int) - b).mean() > 1


def test_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match="no replica generator for 'market'"):
        write_replica("market", tmp_path)
    with pytest.raises(DatasetError, match="scale must be in"):
        write_replica("hd", tmp_path, scale=2)
    with pytest.raises(DatasetError, match="render, flat or empty"):
        write_replica("hd", tmp_path, images="png")
