"""``csv``: a data set described by one CSV file, for images that live anywhere.

Columns ``path,pid,camid,split`` (a header line; other columns are ignored; an optional ``mask``
column names body-part label maps). ``path`` and ``mask`` are relative to the CSV file's folder
(or absolute); ``split`` is one of train/query/gallery; cameras are numbered from ``camid_base``.
Identities in ``junk_pids`` are dropped everywhere, those in ``distractor_pids`` kept in the
gallery only (Market-1501: -1 / 0). Rows keep their file order within a split.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Sequence

from reid.registry import DATASETS

from .base import DatasetError, ReidDataset, Sample
from .common import SPLITS, FileIndex, camera_id, check_shared_keys, keep_sample, splits_dataset

COLUMNS = ("path", "pid", "camid", "split")
DEFAULT_FILE = "dataset.csv"
HINT = ("expected a CSV file with the header path,pid,camid,split (paths relative to the file), or a folder "
        f"holding {DEFAULT_FILE}; see docs/datasets.md (a data set without code)")


def _locate(root: str) -> Path:
    path = Path(root).expanduser()
    if path.is_dir():
        path = path / DEFAULT_FILE
    if not path.is_file():
        raise DatasetError(f"csv: file not found: {path}; {HINT}")
    return path


def read_rows(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """``(line, row)`` of every non-blank data row, the header checked (``COLUMNS`` present)."""
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise DatasetError(f"{csv_path}:1: header {','.join(header) or '(empty)'} lacks "
                               f"{', '.join(missing)}; expected the columns {','.join(COLUMNS)}")
        reader.fieldnames = header
        rows = []
        for row in reader:
            line = reader.line_num
            if not any((v or "").strip() for k, v in row.items() if k is not None):
                continue
            if None in row or any(row.get(c) is None for c in header):  # restkey / restval of DictReader
                raise DatasetError(f"{csv_path}:{line}: expected {len(header)} fields ({','.join(header)}); "
                                   "is a field unquoted or the line cut short?")
            rows.append((line, {k: v.strip() for k, v in row.items()}))
    return rows


def check_csv_keywords(kw: dict[str, Any]) -> tuple[str, set[int], set[int]]:
    """The keywords of :func:`csv_list` checked before the file is read (also at config load:
    ``csv_list.check_keywords``); returns ``(protocol, junk ids, distractor ids)``."""
    return check_shared_keys(kw["protocol"], kw["junk_pids"], kw["distractor_pids"], kw["camid_base"])


@DATASETS.register("csv")
def csv_list(
    root: str = f"datasets/{DEFAULT_FILE}",
    camid_base: int = 1,
    junk_pids: Sequence[int] = (-1,),
    distractor_pids: Sequence[int] = (0,),
    protocol: str = "market",
) -> ReidDataset:
    """A data set from the CSV file ``root`` (or ``root/dataset.csv``); see the module docstring."""
    protocol, junk, distractors = check_csv_keywords(dict(locals()))
    csv_path = _locate(root)
    folder = str(csv_path.parent)
    index = FileIndex()
    splits: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    seen: dict[tuple[str, str], int] = {}
    for line, row in read_rows(csv_path):
        where = f"{csv_path}:{line}"
        if row["split"] not in splits:
            raise DatasetError(f"{where}: split {row['split']!r} is not one of {', '.join(SPLITS)}")
        try:
            pid, raw_cam = int(row["pid"]), int(row["camid"])
        except ValueError:
            raise DatasetError(f"{where}: expected integer pid and camid, got pid={row['pid']!r} "
                               f"camid={row['camid']!r}") from None
        if not row["path"]:
            raise DatasetError(f"{where}: empty path; expected an image path relative to {folder}")
        path = os.path.join(folder, row["path"])
        first = seen.setdefault((path, row["split"]), line)
        if first != line:
            raise DatasetError(f"{where}: {row['path']} is listed again in split {row['split']} "
                               f"(first on line {first}); expected each image once per split")
        index.require(path, where)
        camid = camera_id(raw_cam, camid_base, where)
        if not keep_sample(pid, row["split"], junk, distractors):
            continue
        mask = None
        if row.get("mask"):
            mask = os.path.join(folder, row["mask"])
            index.require(mask, where, "mask")
        splits[row["split"]].append(Sample(path, pid, camid, mask))
    return splits_dataset("csv", splits, protocol, folder, {s: f"{csv_path} (split {s})" for s in SPLITS})


csv_list.check_keywords = check_csv_keywords  # called by the config loader with the resolved keywords
