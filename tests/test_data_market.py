"""Market-1501 parser: real mini split statistics, junk/distractor handling, user errors."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from reid.data import DatasetError
from reid.data.datasets.market import MARKET_PATTERN, market1501, read_image_folder
from reid.registry import DATASETS


def test_market_mini_statistics(market_mini):
    ds = DATASETS.build("market1501", root=str(market_mini))
    stats = ds.stats()
    assert stats["train"] == {"ids": 376, "images": 6540, "cameras": 6}
    assert stats["query"] == {"ids": 375, "images": 1650, "cameras": 6}
    # 4 test identities have all their images in the query (one per camera): 371 gallery ids
    assert stats["gallery"] == {"ids": 371, "images": 4746, "cameras": 6}
    assert sorted({s.pid for s in ds.train}) == list(range(376))
    assert {s.camid for s in ds.query} == set(range(6))
    assert ds.protocol == "market" and "6540" in ds.summary()
    direct = market1501(str(market_mini / "Market-1501-v15.09.15"))
    assert direct.stats() == stats


def touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"")


def fake_market(root: Path) -> Path:
    base = root / "Market-1501-v15.09.15"
    touch(base / "bounding_box_train", "0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg",
          "0007_c3s3_077419_03.jpg", "-1_c1s1_000401_03.jpg", "0000_c1s1_000001_01.jpg", "Thumbs.db")
    touch(base / "query", "0005_c1s1_001051_00.jpg", "0000_c2s1_000001_01.jpg", "-1_c3s1_000002_01.jpg")
    touch(base / "bounding_box_test", "0005_c4s2_000001_02.jpg", "0000_c6s1_000001_01.jpg",
          "-1_c2s1_000002_01.jpg", "0005_c5s1_000008_01.jpg")
    return base


def test_junk_dropped_distractors_in_gallery_only(tmp_path):
    fake_market(tmp_path)
    ds = market1501(str(tmp_path))
    assert [(s.pid, s.camid) for s in ds.train] == [(0, 0), (0, 1), (1, 2)]  # relabelled, 0-based cams
    assert [(s.pid, s.camid) for s in ds.query] == [(5, 0)]
    assert sorted(s.pid for s in ds.gallery) == [0, 5, 5]
    assert all(s.mask is None for s in ds.train + ds.query + ds.gallery)


def test_read_image_folder_options_and_masks(tmp_path):
    touch(tmp_path / "imgs", "0001_c2_f1.png", "-1_c1_f2.png", "0000_c3_f3.png")
    touch(tmp_path / "masks", "0001_c2_f1.png")
    pattern = re.compile(r"(?P<pid>-?\d+)_c(?P<cam>\d+)_f\d+")
    keep = read_image_folder(tmp_path / "imgs", pattern, mask_dir=tmp_path / "masks")
    assert [(s.pid, s.camid) for s in keep] == [(0, 2), (1, 1)]
    assert keep[1].mask == str(tmp_path / "masks" / "0001_c2_f1.png") and keep[0].mask is None
    drop = read_image_folder(tmp_path / "imgs", pattern, drop_distractors=True, junk_pid=-2)
    assert sorted(s.pid for s in drop) == [-1, 1]


def test_bad_name_and_missing_folder_are_clear_errors(tmp_path):
    base = fake_market(tmp_path)
    touch(base / "query", "holiday.jpg")
    with pytest.raises(DatasetError, match=r"holiday\.jpg.*PPPP_cCsS_FFFFFF_NN\.jpg"):
        market1501(str(tmp_path))
    with pytest.raises(DatasetError, match="bounding_box_train") as err:
        market1501(str(tmp_path / "nowhere"))
    assert "Market-1501-v15.09.15" in str(err.value) and "http" in str(err.value)
    assert MARKET_PATTERN.fullmatch("-1_c1s1_000401_03")
