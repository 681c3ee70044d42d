"""Synthetic Market-format data: format, masks, determinism, and raw pixels not being enough."""
from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid.data import build_image_store
from reid.data.datasets.market import MARKET_PATTERN
from reid.data.persons import PART_LABELS, make_cameras, make_identity, render_person
from reid.registry import DATASETS


def market_map(dist: np.ndarray, qp, gp, qc, gc) -> float:
    """Market protocol mAP (same pid and camera removed from the gallery) — a slow reference."""
    aps = []
    for i in range(len(qp)):
        order = np.argsort(dist[i], kind="stable")
        keep = ~((gp[order] == qp[i]) & (gc[order] == qc[i]))
        match = gp[order][keep] == qp[i]
        if match.any():
            hits = np.cumsum(match)
            aps.append(np.mean(hits[match] / (np.flatnonzero(match) + 1)))
    return float(np.mean(aps))


def test_render_person_image_and_parts():
    rng = np.random.default_rng(0)
    cams = make_cameras(3, rng)
    image, mask = render_person(make_identity(rng), rng, 1, (96, 48), cams)
    assert image.shape == (96, 48, 3) and image.dtype == np.uint8
    assert mask.shape == (96, 48) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= set(PART_LABELS.values())
    assert (mask == PART_LABELS["upper_clothes"]).sum() > 50 and (mask == 0).sum() > 0.3 * mask.size
    again = render_person(make_identity(np.random.default_rng(0)), np.random.default_rng(5), 1, (96, 48), cams)
    other = render_person(make_identity(np.random.default_rng(0)), np.random.default_rng(6), 1, (96, 48), cams)
    assert not np.array_equal(again[0], other[0])  # pose/background/jitter differ per draw


def test_market_format_masks_and_same_seed_same_files(tmp_path):
    kw = dict(num_ids=3, num_test_ids=3, images_per_id=4, cameras=3, height=64, width=32, seed=7,
              distractors=2, junk=2)
    a = DATASETS.build("synthetic", root=str(tmp_path / "a"), **kw)
    b = DATASETS.build("synthetic", root=str(tmp_path / "b"), **kw)
    stats = a.stats()
    assert stats["train"] == {"ids": 3, "images": 12, "cameras": stats["train"]["cameras"]}
    assert stats["query"]["ids"] == 3 and stats["query"]["images"] == 6
    assert stats["gallery"]["images"] == 6 + 2 and 0 in {s.pid for s in a.gallery}  # junk dropped
    base_a, base_b = Path(a.root), Path(b.root)
    assert base_a.name == "Market-1501-v15.09.15"
    files = sorted(p.relative_to(base_a) for p in base_a.rglob("*") if p.is_file())
    assert len(files) == 2 * (12 + 6 + 10)  # images + masks (junk files on disk too)
    assert files == sorted(p.relative_to(base_b) for p in base_b.rglob("*") if p.is_file())
    assert all(filecmp.cmp(base_a / f, base_b / f, shallow=False) for f in files)
    for s in a.train + a.query + a.gallery:
        assert MARKET_PATTERN.fullmatch(Path(s.path).stem) and s.mask and Path(s.mask).is_file()
        assert Image.open(s.path).size == (32, 64)
    assert any(p.name.startswith("-1_") for p in (base_a / "bounding_box_test").iterdir())
    # a second call reuses the cache folder; another seed gives another folder
    assert DATASETS.build("synthetic", root=str(tmp_path / "a"), **kw).root == a.root
    c = DATASETS.build("synthetic", root=str(tmp_path / "a"), **{**kw, "seed": 8})
    assert c.root != a.root and len(list((tmp_path / "a").iterdir())) == 2


@pytest.mark.slow
def test_raw_pixels_do_not_identify(tmp_path):
    """Cosine retrieval on downsampled normalised pixels is poor (mAP well below 0.3)."""
    ds = DATASETS.build("synthetic", root=str(tmp_path), num_ids=2, num_test_ids=60, images_per_id=8)

    def feats(samples):
        x = build_image_store([s.path for s in samples], (32, 16), tmp_path / "cache", workers=2)
        x = x.reshape(len(samples), -1).astype(np.float32)
        x -= x.mean(1, keepdims=True)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    q, g = feats(ds.query), feats(ds.gallery)
    arr = lambda ss, a: np.array([getattr(s, a) for s in ss])  # noqa: E731
    m = market_map(-q @ g.T, arr(ds.query, "pid"), arr(ds.gallery, "pid"), arr(ds.query, "camid"),
                   arr(ds.gallery, "camid"))
    assert 0.0 < m < 0.2  # ~0.06 here; the quickstart set (100 test ids): ~0.03
