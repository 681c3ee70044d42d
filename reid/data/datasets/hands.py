"""11k Hands (Afifi 2019): four sub-sets by aspect, protocol of Baisa et al. (GPA-Net / MBA-Net).

Layout under the data root: ``11k/Hands/Hand_0000002.jpg ...`` and ``11k/HandInfo.csv`` (the ``11k``
level is optional). Per aspect: accessories dropped, sorted subject ids, first half (rounded up)
train with one seeded image per id held out in ``val``; for each test id one random image goes to
the gallery, the rest to the query. The gallery of every sub-set is the union of the four sub-sets'
galleries (other sub-sets' ids offset by ``ID_OFFSET * (k + 1)``), redrawn with seeds
``0..num_draws-1`` (``draws``); ``query``/``gallery`` are draw 0. Cameras: train/query 0, gallery 1.
"""
from __future__ import annotations

import csv
from pathlib import Path

from reid.checks import Dim, Seed
from reid.data.protocols import HANDS
from reid.registry import DATASETS

from .base import DatasetError, ReidDataset, Sample, relabel
from .common import (
    GALLERY_CAM,
    ID_OFFSET,
    QUERY_CAM,
    FileIndex,
    find_dir,
    group_by_pid,
    hold_out,
    pick_one_per_id,
    with_cam,
)

ASPECTS = ("dorsal right", "dorsal left", "palmar right", "palmar left")
CSV_COLUMNS = (
    "id", "age", "gender", "skinColor", "accessories", "nailPolish", "aspectOfHand", "imageName", "irregularities",
)
REQUIRED_COLUMNS = ("id", "accessories", "aspectOfHand", "imageName")
#: Published split sizes (ids, images, cameras); train includes validation images. See docs/datasets.md.
PUBLISHED = {
    "hands11k_dorsal_right": {"train": (72, 962, 1), "query": (71, 971, 1), "gallery": (290, 290, 1)},
    "hands11k_dorsal_left": {"train": (73, 808, 1), "query": (73, 988, 1), "gallery": (290, 290, 1)},
    "hands11k_palmar_right": {"train": (72, 977, 1), "query": (71, 917, 1), "gallery": (290, 290, 1)},
    "hands11k_palmar_left": {"train": (76, 1004, 1), "query": (75, 948, 1), "gallery": (290, 290, 1)},
}
HINT = (
    "11k Hands: expected <root>/11k/Hands/Hand_*.jpg and <root>/11k/HandInfo.csv "
    "(https://sites.google.com/view/11khands); see docs/datasets.md"
)


def read_hand_info(folder: Path) -> dict[str, list[Sample]]:
    """Samples per aspect from ``HandInfo.csv`` (accessories dropped), camera 0, original ids."""
    csv_path = folder / "HandInfo.csv"
    if not csv_path.is_file():
        raise DatasetError(f"11k Hands: file not found: {csv_path}; {HINT}")
    images = folder / "Hands"
    if not images.is_dir():
        raise DatasetError(f"11k Hands: folder not found: {images}; {HINT}")
    index = FileIndex()
    out: dict[str, list[Sample]] = {a: [] for a in ASPECTS}
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DatasetError(
                f"{csv_path}: unexpected columns {header}; expected {', '.join(CSV_COLUMNS)} "
                f"(missing {', '.join(missing)})"
            )
        reader.fieldnames = header
        for line, row in enumerate(reader, start=2):
            if None in row or any(row.get(c) is None for c in header):  # restkey / restval of DictReader
                fields = len(header) + len(row.get(None) or []) - sum(row.get(c) is None for c in header)
                raise DatasetError(f"{csv_path}:{line}: row has {fields} fields, the header has {len(header)} "
                                   f"({', '.join(header)}); is the file cut short or a field unquoted?")
            try:
                pid = int(row["id"].strip())
                acc = int(row["accessories"].strip())
            except (ValueError, AttributeError) as exc:
                raise DatasetError(f"{csv_path}:{line}: expected integer id and accessories, got {row}") from exc
            aspect = row["aspectOfHand"].strip()
            if aspect not in out:
                raise DatasetError(f"{csv_path}:{line}: aspectOfHand '{aspect}' is not one of {', '.join(ASPECTS)}")
            if acc == 1:
                continue
            path = images / row["imageName"].strip()
            index.require(path, csv_path)
            out[aspect].append(Sample(str(path), pid, QUERY_CAM))
    for aspect in ASPECTS:
        out[aspect].sort(key=lambda s: (s.pid, s.path))
    return out


def hands_protocol(
    name: str, subsets: list[list[Sample]], target: int, *, seed: int, num_draws: int, root: str
) -> ReidDataset:
    """The hand protocol for sub-set ``target`` of ``subsets`` (each a list of camera-0 samples).

    Each sub-set: sorted ids, first ``ceil(n/2)`` train, the rest test. The shared gallery holds
    one random image per test id of every sub-set, the other sub-sets' ids offset.
    """
    tests: list[dict[int, list[Sample]]] = []
    train: list[Sample] = []
    val: list[Sample] = []
    for k, samples in enumerate(subsets):
        groups = group_by_pid(samples)
        ids = sorted(groups)
        n_train = len(ids) - len(ids) // 2
        tests.append({pid: groups[pid] for pid in ids[n_train:]})
        if k == target:
            train_groups = {pid: groups[pid] for pid in ids[:n_train]}
            val, train = hold_out(train_groups, seed)
    if not train:
        raise DatasetError(f"{name}: no training images found under {root}")
    mapping = {pid: i for i, pid in enumerate(sorted({s.pid for s in train}))}
    val = [Sample(s.path, mapping[s.pid], s.camid, s.mask) for s in val]
    draws = []
    for d in range(num_draws):
        query: list[Sample] = []
        gallery: list[Sample] = []
        for k, groups in enumerate(tests):
            picked, rest = pick_one_per_id(groups, [d, k])
            if k == target:
                query = with_cam(rest, QUERY_CAM)
                gallery.extend(with_cam(picked, GALLERY_CAM))
            else:
                gallery.extend(with_cam(picked, GALLERY_CAM, ID_OFFSET * (k + 1)))
        draws.append((query, gallery))
    query, gallery = draws[0] if draws else ([], [])
    return ReidDataset(name, relabel(train), query, gallery, protocol=HANDS.name, val=val, draws=draws, root=root)


def _load_11k(aspect: str, root: str, seed: int, num_draws: int) -> ReidDataset:
    folder = find_dir(root, ("11k", "11k_hands", ""), "11k Hands", HINT)
    per_aspect = read_hand_info(folder)
    name = "hands11k_" + aspect.replace(" ", "_")
    subsets = [per_aspect[a] for a in ASPECTS]
    return hands_protocol(name, subsets, ASPECTS.index(aspect), seed=seed, num_draws=num_draws, root=str(folder))


@DATASETS.register("hands11k_dorsal_right")
def hands11k_dorsal_right(root: str = "datasets", seed: Seed = 0, num_draws: Dim = HANDS.draws) -> ReidDataset:
    """11k Hands dorsal right (D-r): 72 / 962 train, 971 query, 290 gallery."""
    return _load_11k("dorsal right", root, seed, num_draws)


@DATASETS.register("hands11k_dorsal_left")
def hands11k_dorsal_left(root: str = "datasets", seed: Seed = 0, num_draws: Dim = HANDS.draws) -> ReidDataset:
    """11k Hands dorsal left (D-l): 73 / 808 train, 988 query, 290 gallery."""
    return _load_11k("dorsal left", root, seed, num_draws)


@DATASETS.register("hands11k_palmar_right")
def hands11k_palmar_right(root: str = "datasets", seed: Seed = 0, num_draws: Dim = HANDS.draws) -> ReidDataset:
    """11k Hands palmar right (P-r): 72 / 977 train, 917 query, 290 gallery."""
    return _load_11k("palmar right", root, seed, num_draws)


@DATASETS.register("hands11k_palmar_left")
def hands11k_palmar_left(root: str = "datasets", seed: Seed = 0, num_draws: Dim = HANDS.draws) -> ReidDataset:
    """11k Hands palmar left (P-l): 76 / 1,004 train, 948 query, 290 gallery."""
    return _load_11k("palmar left", root, seed, num_draws)
