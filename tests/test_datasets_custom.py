"""``folder`` and ``csv``: a data set without code gives exactly the Market-1501 parser's samples.

The Market layout (the real mini set when present, the synthetic set always) is re-laid by links as
a folder tree (file names, and a folder per identity) and as a CSV; each must give the same samples
(path resolved, pid, camera, mask) and the same evaluation on the same random features.
"""
from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import pytest
import torch

from reid.config import load_config
from reid.data.datasets import DatasetError
from reid.data.datasets.market import MARKET_SPLITS, market1501
from reid.evaluation import evaluate_rank
from reid.registry import DATASETS, ConfigError

SPLITS = ("train", "query", "gallery")
IMAGE = (".jpg", ".png")


def relay(base: Path, out: Path, layout: str) -> Path:
    """Re-lay the Market folder ``base`` by links, junk and distractors included: ``names`` links
    each split folder (and its mask folder) as ``out/{train,query,gallery}``; ``subfolders`` links
    every image into ``out/<split>/<pid>/`` and its mask into ``out/masks/<split>/<pid>/``."""
    for split, src in zip(SPLITS, MARKET_SPLITS):
        masks = base / "masks" / src
        if layout == "names":
            for path, target in ((base / src, out / split), (masks, out / "masks" / split)):
                if path.is_dir():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(path, target, target_is_directory=True)
            continue
        for entry in os.scandir(base / src):
            if not entry.name.endswith(IMAGE):
                continue
            pid, stem = entry.name.split("_")[0], Path(entry.name).stem
            for path, target in ((entry.path, out / split / pid / entry.name),
                                 (masks / f"{stem}.png", out / "masks" / split / pid / f"{stem}.png")):
                if os.path.exists(path):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(path, target)
    return out


def write_csv(base: Path, csv_path: Path) -> Path:
    """One CSV row per image of the Market folder ``base`` (paths relative to the CSV, an ignored
    extra column first, the columns in another order than documented)."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["note", "split", "path", "camid", "pid", "mask"])
        for split, src in zip(SPLITS, MARKET_SPLITS):
            for name in sorted(os.listdir(base / src)):
                if name.endswith(IMAGE):
                    pid, cam = name.split("_")[:2]
                    mask = base / "masks" / src / (Path(name).stem + ".png")
                    rel = os.path.relpath(base / src / name, csv_path.parent)
                    out.writerow(["x", split, rel, cam[1:].split("s")[0], int(pid),
                                  os.path.relpath(mask, csv_path.parent) if mask.exists() else ""])
    return csv_path


def resolve(path: str) -> str:
    """The file a re-laid path stands for (a link made by :func:`relay`, or a path through ``..``)."""
    folder, name = os.path.split(path)
    if os.path.islink(path):
        path = os.readlink(path)
    elif os.path.islink(folder):
        path = os.path.join(os.readlink(folder), name)
    return os.path.normpath(path)


def key(ds) -> dict[str, list[tuple]]:
    def one(s):
        return resolve(s.path), s.pid, s.camid, s.mask and resolve(s.mask)
    return {split: sorted(one(s) for s in getattr(ds, split)) for split in SPLITS}


def evaluation(ds, feats: dict[str, torch.Tensor]) -> dict[str, float]:
    qf = torch.stack([feats[resolve(s.path)] for s in ds.query])
    gf = torch.stack([feats[resolve(s.path)] for s in ds.gallery])
    result = evaluate_rank(torch.cdist(qf, gf), [s.pid for s in ds.query], [s.pid for s in ds.gallery],
                           [s.camid for s in ds.query], [s.camid for s in ds.gallery], max_rank=10,
                           protocol=ds.protocol)
    return result.summary((1, 5, 10))


def check_same(market, tmp_path: Path, layouts=("names", "subfolders")) -> None:
    base = Path(market.root)
    want = key(market)
    paths = sorted({resolve(s.path) for s in market.query + market.gallery})
    g = torch.Generator().manual_seed(0)
    feats = dict(zip(paths, torch.randn(len(paths), 8, generator=g)))
    table = DATASETS.build("csv", root=str(write_csv(base, tmp_path / "lists" / "market.csv")))
    folders = [DATASETS.build("folder", root=str(relay(base, tmp_path / layout, layout)), layout=layout)
               for layout in layouts]
    reference = evaluation(market, feats)
    assert 0 < reference["rank1"] < 1
    for ds in (table, *folders):
        assert key(ds) == want
        assert ds.num_train_ids == market.num_train_ids and ds.protocol == "market"
        assert evaluation(ds, feats) == reference
    # the names layout and the CSV keep Market's order exactly
    assert [(s.pid, s.camid) for s in folders[0].train] == [(s.pid, s.camid) for s in market.train]
    assert [(s.pid, s.camid) for s in table.gallery] == [(s.pid, s.camid) for s in market.gallery]


def test_market_mini_relaid(market_mini, tmp_path):
    market = market1501(str(market_mini))
    check_same(market, tmp_path, layouts=("names",))  # a link per image (subfolders): too slow here


def test_synthetic_relaid_with_masks_junk_and_distractors(tmp_path):
    market = DATASETS.build("synthetic", root=str(tmp_path / "syn"), num_ids=3, num_test_ids=3, images_per_id=4,
                            cameras=3, height=32, width=16, seed=3, distractors=2, junk=2)
    assert market.has_masks and 0 in {s.pid for s in market.gallery}
    check_same(market, tmp_path)
    inplace = DATASETS.build("folder", root=market.root, train_dir=MARKET_SPLITS[0], gallery_dir=MARKET_SPLITS[2])
    assert key(inplace) == key(market)  # split folder names and masks/<split folder>/ as Market's


# ----------------------------------------------------------------------------- user errors


def touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        (folder / n).write_bytes(b"")
    return folder


def small(root: Path) -> Path:
    touch(root / "train", "0001_c1_a.jpg", "0001_c2_b.jpg", "-1_c1_j.jpg", "0000_c2_d.jpg", "notes.txt")
    touch(root / "query", "0005_c1_q.jpg", "0009_c1_q.jpg")
    touch(root / "gallery", "0005_c2_g.jpg", "0000_c3_d.jpg", "-1_c1_j.jpg")
    return root


def test_folder_rules_options_and_warning(tmp_path, caplog):
    root = small(tmp_path / "a")
    with caplog.at_level(logging.WARNING, logger="reid"):
        ds = DATASETS.build("folder", root=str(root))
    assert [(s.pid, s.camid) for s in ds.train] == [(0, 0), (0, 1)]  # junk and distractor dropped
    assert [s.pid for s in ds.query] == [5, 9] and [s.pid for s in ds.gallery] == [0, 5]
    assert "1 of 2 query identities (1 query images) have no gallery image" in caplog.text
    other = DATASETS.build("folder", root=str(root), junk_pids=[], distractor_pids=[9], camid_base=0,
                           protocol="hands")
    assert sorted(s.pid for s in other.query) == [5] and {-1, 0} <= {s.pid for s in other.gallery}
    assert [s.camid for s in other.train] == [1, 2, 1, 2] and other.evaluation_protocol.cross_camera is False
    touch(tmp_path / "b" / "train", "7/x.jpg", "7/y.jpg")
    touch(tmp_path / "b" / "probe", "8/q.jpg")
    touch(tmp_path / "b" / "gallery", "8/g.jpg")
    const = DATASETS.build("folder", root=str(tmp_path / "b"), layout="subfolders", camera=3, query_dir="probe",
                           protocol="hands")
    assert [(s.pid, s.camid) for s in const.train + const.query] == [(0, 3), (0, 3), (8, 3)]


@pytest.mark.parametrize("pattern, expected", [
    ("(?P<pid>\\d+", r"dataset\.pattern: .* is not a regular expression"),
    ("(\\d+)_c(?P<camid>\\d+).*", r"dataset\.pattern: .* has no named group \(\?P<pid>"),
    ("(?P<pid>\\d+).*", r"dataset\.pattern: .* has no named group \(\?P<camid>"),
])
def test_bad_pattern_is_an_error_before_reading(tmp_path, pattern, expected):
    with pytest.raises(ConfigError, match=expected):
        DATASETS.build("folder", root=str(tmp_path / "nowhere"), pattern=pattern)


@pytest.mark.parametrize("change, expected", [
    (lambda r: touch(r / "query", "holiday.jpg"), r"query/holiday\.jpg: file name does not match dataset\.pattern"),
    (lambda r: touch(r / "gallery", "0005_c0_z.jpg"), r"0005_c0_z\.jpg: camera 0 is below dataset\.camid_base = 1"),
    (lambda r: touch(r / "train", "0003/a.jpg"), r"train/0003: a sub-folder .* dataset\.layout=subfolders"),
    (lambda r: [p.unlink() for p in (r / "query").iterdir()], r"folder: no query image in .*query"),
    (lambda r: (r / "gallery").rename(r / "test"), r"expected folder not found .*gallery"),
])
def test_folder_malformed_entries(tmp_path, change, expected):
    root = small(tmp_path)
    change(root)
    with pytest.raises(DatasetError, match=expected):
        DATASETS.build("folder", root=str(root))


def test_folder_subfolder_errors(tmp_path):
    touch(tmp_path / "train", "alice/0001_c1_a.jpg")
    with pytest.raises(DatasetError, match=r"train/alice: identity folder name 'alice' is not an integer"):
        DATASETS.build("folder", root=str(tmp_path), layout="subfolders")


def write_rows(path: Path, *rows: str) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("bad, expected", [
    ("q.jpg,5,1,probe", r"t\.csv:4: split 'probe' is not one of train, query, gallery"),
    ("q.jpg,five,1,query", r"t\.csv:4: expected integer pid and camid, got pid='five'"),
    ("missing.jpg,5,1,query", r"t\.csv:4: image listed there is absent: expected file .*missing\.jpg"),
    ("q.jpg,5,0,query", r"t\.csv:4: camera 0 is below dataset\.camid_base = 1"),
    ("a.jpg,1,1,train", r"t\.csv:4: a\.jpg is listed again in split train \(first on line 2\)"),
    ("q.jpg,5,1", r"t\.csv:4: expected 4 fields"),
])
def test_csv_malformed_rows(tmp_path, bad, expected):
    touch(tmp_path, "a.jpg", "g.jpg", "q.jpg")
    path = write_rows(tmp_path / "t.csv", "path,pid,camid,split", "a.jpg,1,1,train", "g.jpg,5,2,gallery", bad)
    with pytest.raises(DatasetError, match=expected):
        DATASETS.build("csv", root=str(path))


def test_csv_header_empty_split_and_folder_root(tmp_path):
    touch(tmp_path, "a.jpg", "g.jpg", "q.jpg")
    write_rows(tmp_path / "dataset.csv", "path,pid,cam,split", "a.jpg,1,1,train")
    with pytest.raises(DatasetError, match=r"dataset\.csv:1: header path,pid,cam,split lacks camid"):
        DATASETS.build("csv", root=str(tmp_path))
    write_rows(tmp_path / "dataset.csv", "path,pid,camid,split", "a.jpg,1,1,train", "g.jpg,5,2,gallery",
               "q.jpg,-1,1,query")
    with pytest.raises(DatasetError, match=r"csv: no query image in .*dataset\.csv \(split query\)"):
        DATASETS.build("csv", root=str(tmp_path))
    with pytest.raises(DatasetError, match=r"csv: file not found: .*other\.csv"):
        DATASETS.build("csv", root=str(tmp_path / "other.csv"))


def test_keywords_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset\.protocol: unknown evaluation protocol 'hand'; did you mean"):
        DATASETS.build("csv", root=str(tmp_path), protocol="hand")
    with pytest.raises(ConfigError, match=r"dataset\.junk_pids: expected a list of integer"):
        DATASETS.build("folder", root=str(tmp_path), junk_pids=["-1"])
    with pytest.raises(ConfigError, match=r"dataset\.layout' expects one of names, subfolders"):
        load_config(None, ["dataset.name=folder", "dataset.layout=flat"])
    with pytest.raises(ConfigError, match=r"dataset\.distractor_pids' expects list"):
        load_config(None, ["dataset.name=csv", "dataset.distractor_pids=0"])
    with pytest.raises(ConfigError, match=r"dataset\.pattern: .* has no named group \(\?P<pid>"):
        load_config(None, ["dataset.name=folder", "dataset.pattern=(?P<id>\\d+)_c(?P<camid>\\d+)"])
    with pytest.raises(ConfigError, match=r"dataset\.protocol: unknown evaluation protocol 'market1501'"):
        load_config(None, ["dataset.name=csv", "dataset.protocol=market1501"])
    cfg = load_config(None, ["dataset.name=folder", "dataset.layout=subfolders", "dataset.camera=0",
                                "dataset.pattern=x"])
    assert cfg.dataset.junk_pids == (-1,) and cfg.dataset.layout == "subfolders"  # no group needed then
