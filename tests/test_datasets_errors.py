"""Bad input: each a DatasetError naming the file and what was expected."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

import reid.data.datasets  # noqa: F401
from reid.data.datasets import DatasetError
from reid.registry import DATASETS
from reid.testing.replicas import write_replica

ALL = ["dukemtmcreid", "cuhk03_labeled", "cuhk03_detected", "msmt17", "hands11k_dorsal_right",
       "hands11k_dorsal_left", "hands11k_palmar_right", "hands11k_palmar_left", "hd", "folder", "csv"]


@pytest.mark.parametrize("name", ALL)
def test_wrong_root(name, tmp_path):
    with pytest.raises(DatasetError, match="not found") as exc:
        DATASETS.build(name, root=str(tmp_path / "missing"))
    assert str(tmp_path / "missing") in str(exc.value) and "docs/datasets.md" in str(exc.value)


@pytest.mark.parametrize("name", ALL)
def test_empty_root_names_layout(name, tmp_path):
    with pytest.raises(DatasetError, match="expected"):
        DATASETS.build(name, root=str(tmp_path))


@pytest.fixture
def msmt(tmp_path) -> Path:
    write_replica("msmt17", tmp_path, seed=0, scale=0.01, images="empty")
    return tmp_path / "MSMT17_V1"


def test_msmt17_missing_list_file(msmt):
    (msmt / "list_query.txt").unlink()
    with pytest.raises(DatasetError, match=r"file not found: .*list_query\.txt"):
        DATASETS.build("msmt17", root=str(msmt.parent))


def test_msmt17_listed_image_absent(msmt):
    first = (msmt / "list_gallery.txt").read_text().split()[0]
    (msmt / "test" / first).unlink()
    with pytest.raises(DatasetError, match=r"list_gallery\.txt:1: image listed there is absent: expected file .*"
                       + first.split("/")[1]):
        DATASETS.build("msmt17", root=str(msmt.parent))


def test_msmt17_malformed_line(msmt):
    with open(msmt / "list_train.txt", "a") as f:
        f.write("garbage\n")
    with pytest.raises(DatasetError, match=r"list_train\.txt:\d+: expected 'PPPP/PPPP_III_CC"):
        DATASETS.build("msmt17", root=str(msmt.parent))


@pytest.fixture
def hands(tmp_path) -> Path:
    write_replica("hands11k", tmp_path, seed=0, scale=0.07, images="empty")
    return tmp_path / "11k"


def rewrite_csv(path: Path, fn) -> None:
    with open(path) as f:
        rows = list(csv.reader(f))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(fn(rows))


def test_hands_csv_unexpected_columns(hands):
    rewrite_csv(hands / "HandInfo.csv", lambda rows: [[c.replace("Hand", "") for c in rows[0]]] + rows[1:])
    expected = r"HandInfo\.csv: unexpected columns.*expected id, age.*missing aspectOfHand"
    with pytest.raises(DatasetError, match=expected):
        DATASETS.build("hands11k_dorsal_left", root=str(hands.parent))


def test_hands_csv_bad_value(hands):
    rewrite_csv(hands / "HandInfo.csv", lambda rows: rows[:1] + [rows[1][:6] + ["sideways"] + rows[1][7:]] + rows[2:])
    with pytest.raises(DatasetError, match=r"HandInfo\.csv:2: aspectOfHand 'sideways' is not one of"):
        DATASETS.build("hands11k_dorsal_left", root=str(hands.parent))


def test_hands_image_absent(hands):
    with open(hands / "HandInfo.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["accessories"] == "0")
    (hands / "Hands" / row["imageName"]).unlink()
    with pytest.raises(DatasetError, match=r"HandInfo\.csv: image listed there is absent: expected file .*"
                       + row["imageName"]):
        DATASETS.build("hands11k_palmar_right", root=str(hands.parent))


def test_market_style_bad_name_and_missing_split(tmp_path):
    write_replica("dukemtmcreid", tmp_path, seed=0, scale=0.01, images="empty")
    base = tmp_path / "DukeMTMC-reID"
    (base / "query" / "oops.jpg").touch()
    with pytest.raises(DatasetError, match=r"oops\.jpg: unexpected file name; expected PPPP_cC_fFFFFFFF\.jpg"):
        DATASETS.build("dukemtmcreid", root=str(tmp_path))
    (base / "query" / "oops.jpg").unlink()
    (base / "query").rename(base / "queries")
    with pytest.raises(DatasetError, match=r"folder not found: .*DukeMTMC-reID/query"):
        DATASETS.build("dukemtmcreid", root=str(tmp_path))


def test_hd_bad_name(tmp_path):
    write_replica("hd", tmp_path, seed=0, scale=0.02, images="empty")
    (tmp_path / "HD" / "Original Images" / "502-712" / "photo.jpg").touch()
    with pytest.raises(DatasetError, match=r"photo\.jpg: expected a name <id>_<n>\.jpg"):
        DATASETS.build("hd", root=str(tmp_path))
