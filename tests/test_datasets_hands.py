"""11k Hands and HD protocols on small seeded replicas."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import reid.data.datasets  # noqa: F401
from reid.data.datasets.common import ID_OFFSET, draw_index
from reid.data.datasets.hands import ASPECTS
from reid.registry import DATASETS
from reid.testing.replicas import write_replica

NAMES = [f"hands11k_{a.replace(' ', '_')}" for a in ASPECTS]


@pytest.fixture(scope="module")
def hands_root(tmp_path_factory) -> Path:
    return write_replica("hands11k", tmp_path_factory.mktemp("11k"), seed=7, scale=0.12, images="flat", size=(8, 8))


@pytest.fixture(scope="module")
def hand_info(hands_root) -> dict[str, tuple[int, str, int]]:
    with open(hands_root / "11k" / "HandInfo.csv") as f:
        return {r["imageName"]: (int(r["id"]), r["aspectOfHand"], int(r["accessories"])) for r in csv.DictReader(f)}


def test_protocol_per_subset(hands_root, hand_info):
    galleries = []
    for k, name in enumerate(NAMES):
        ds = DATASETS.build(name, root=str(hands_root))
        assert ds.protocol == "hands" and len(ds.draws) == 10
        info = lambda s: hand_info[Path(s.path).name]  # noqa: E731
        every = ds.train + ds.val + ds.query + ds.gallery
        assert all(info(s)[2] == 0 for s in every)  # accessories dropped
        assert all(info(s)[1] == ASPECTS[k] for s in ds.train + ds.val + ds.query)
        train_ids = {info(s)[0] for s in ds.train + ds.val}
        test_ids = {info(s)[0] for s in ds.query}
        assert max(train_ids) < min(test_ids)  # sorted ids, first half train
        assert len(train_ids) == len(train_ids | test_ids) - len(test_ids) and len(train_ids) >= len(test_ids)
        # one validation image per training id, labels shared with train
        assert sorted(s.pid for s in ds.val) == sorted({s.pid for s in ds.train})
        assert not {s.path for s in ds.val} & {s.path for s in ds.train}
        for query, gallery in ds.draws:
            gp = [s.pid for s in gallery]
            assert all(gp.count(q.pid) == 1 for q in query)  # exactly one true match
            own = [s for s in gallery if s.pid < ID_OFFSET]
            assert {s.pid for s in own} == {s.pid for s in query} and len(own) == len(test_ids)
            assert all(q.camid != g.camid for q in query[:1] for g in gallery)
        galleries.append({s.path for s in ds.gallery})
    assert all(g == galleries[0] for g in galleries)  # the shared gallery


def test_draws_are_seeded_and_distinct(hands_root):
    a = DATASETS.build("hands11k_palmar_left", root=str(hands_root))
    b = DATASETS.build("hands11k_palmar_left", root=str(hands_root))
    assert a.draws == b.draws and a.val == b.val
    assert len({tuple(s.path for s in g) for _, g in a.draws}) > 1
    own = [{s.path for s in q + g if s.pid < ID_OFFSET} for q, g in a.draws]
    assert all(p == own[0] for p in own)  # the same test images, redistributed
    c = DATASETS.build("hands11k_palmar_left", root=str(hands_root), seed=1, num_draws=3)
    assert len(c.draws) == 3 and c.draws[0] == a.draws[0] and c.val != a.val


def test_draw_index(hands_root):
    ds = DATASETS.build("hands11k_dorsal_right", root=str(hands_root))
    images, draws = draw_index(ds)
    assert len({s.path for s in images}) == len(images)
    for (query, gallery), d in zip(ds.draws, draws):
        assert [images[i].path for i in d["query"]] == [s.path for s in query]
        assert [images[i].path for i in d["gallery"]] == [s.path for s in gallery]
        assert d["g_pids"].tolist() == [s.pid for s in gallery] and d["q_camids"].dtype == np.int64


def test_hd_protocol(tmp_path):
    write_replica("hd", tmp_path, seed=2, scale=0.1, images="flat", size=(8, 8))
    ds = DATASETS.build("hd", root=str(tmp_path))
    extra = {p.name for p in (tmp_path / "HD" / "Original Images" / "502-712").iterdir()}
    assert ds.protocol == "hands" and len(ds.draws) == 10
    for query, gallery in ds.draws:
        offset = [s for s in gallery if s.pid >= ID_OFFSET]
        assert {Path(s.path).name for s in offset} == extra  # every 502-712 image, never a match
        gp = [s.pid for s in gallery]
        assert all(gp.count(q.pid) == 1 for q in query)
        assert len(gallery) - len(offset) == len({q.pid for q in query})
    assert sorted(s.pid for s in ds.val) == sorted({s.pid for s in ds.train})


def test_draws_evaluate_with_the_hands_protocol(hands_root):
    """Oracle distances (0 for the same id) give rank-1 = mAP = 1 on every draw, no query skipped."""
    from reid.evaluation.rank import evaluate_rank

    ds = DATASETS.build("hands11k_dorsal_left", root=str(hands_root))
    images, draws = draw_index(ds)
    for d in draws:
        dist = (d["q_pids"][:, None] != d["g_pids"][None, :]).astype(np.float32)
        res = evaluate_rank(dist, d["q_pids"], d["g_pids"], d["q_camids"], d["g_camids"], protocol="hands",
                            backend="torch")
        assert res.num_valid == len(d["query"]) and res.cmc[0] == 1.0 and res.mAP == 1.0
