"""MSMT17 (V1 and V2): image folders plus ``list_{train,val,query,gallery}.txt``.

V1: ``MSMT17_V1/{train,test}/``; V2: ``MSMT17_V2/{mask_train_v2,mask_test_v2}/``. Each list line is
``PPPP/PPPP_III_CC_date_frame_x.jpg label``; the camera is the third underscore field (01..15).
Train = train + val lists by default (``combine_val=False`` keeps val as ``dataset.val``).
"""
from __future__ import annotations

import os
from pathlib import Path

from reid.registry import DATASETS, suggestion

from .base import DatasetError, ReidDataset, Sample, relabel
from .common import FileIndex, find_dir, require_file

V1 = [("MSMT17_V1", "train", "test"), ("MSMT17", "train", "test")]
V2 = [("MSMT17_V2", "mask_train_v2", "mask_test_v2"), ("MSMT17", "mask_train_v2", "mask_test_v2")]
LAYOUTS = {"auto": V2 + V1, "v1": V1, "v2": V2}  # (folder, train images, test images)
#: Published split sizes (ids, images, cameras); train includes validation images. See docs/datasets.md.
PUBLISHED = {
    "msmt17": {"train": (1041, 32621, 15), "query": (3060, 11659, 15), "gallery": (3060, 82161, 15)},
}
HINT = (
    "MSMT17: expected <root>/MSMT17_V1/{train,test}/ (or <root>/MSMT17_V2/{mask_train_v2,mask_test_v2}/) "
    "with list_train.txt, list_val.txt, list_query.txt, list_gallery.txt beside them "
    "(request from https://www.pkuvmc.com/dataset.html); see docs/datasets.md"
)


def read_list(list_path: Path, image_dir: Path, index: FileIndex | None = None) -> list[Sample]:
    """Samples of one MSMT17 list file; every listed image must exist under ``image_dir``."""
    require_file(list_path, "MSMT17", HINT)
    index = index or FileIndex()
    samples = []
    base = str(image_dir)
    with open(list_path) as f:
        for line_no, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                rel, label = line.split()
                pid = int(label)
                camid = int(rel.rsplit("/", 1)[-1].split("_")[2]) - 1
            except (ValueError, IndexError) as exc:
                raise DatasetError(
                    f"{list_path}:{line_no}: expected 'PPPP/PPPP_III_CC_date_frame_x.jpg label', got {line!r}"
                ) from exc
            path = os.path.join(base, rel)
            if not index.exists(path):
                index.require(path, f"{list_path}:{line_no}")
            samples.append(Sample(path, pid, camid))
    if not samples:
        raise DatasetError(f"{list_path}: empty list file; expected lines 'PPPP/PPPP_III_CC_..._x.jpg label'")
    return samples


@DATASETS.register("msmt17")
def msmt17(root: str = "datasets", version: str = "auto", combine_val: bool = True) -> ReidDataset:
    """MSMT17: 1,041 / 32,621 train (with val), 3,060 / 11,659 query, 3,060 / 82,161 gallery.

    ``version``: ``auto`` (V2 if present, else V1), ``v1`` or ``v2``.
    """
    version = version.lower()
    if version not in LAYOUTS:
        raise DatasetError(f"msmt17: unknown version '{version}'{suggestion(version, LAYOUTS)}")
    found = [(Path(root).expanduser() / f, tr, te) for f, tr, te in LAYOUTS[version]
             if (Path(root).expanduser() / f / tr).is_dir()]
    if not found:
        tried = sorted({f"{f}/{t}" for f, t, _ in LAYOUTS[version]})
        find_dir(root, [""], "MSMT17", HINT)  # a missing root is reported as such
        raise DatasetError(f"MSMT17: no image folder found under {root} (tried {', '.join(tried)}); {HINT}")
    base, train_dir, test_dir = found[0]
    index = FileIndex()
    train = read_list(base / "list_train.txt", base / train_dir, index)
    val = read_list(base / "list_val.txt", base / train_dir, index)
    query = read_list(base / "list_query.txt", base / test_dir, index)
    gallery = read_list(base / "list_gallery.txt", base / test_dir, index)
    if combine_val:
        train, val = train + val, []
    else:
        mapping = {pid: i for i, pid in enumerate(sorted({s.pid for s in train}))}
        missing = {s.pid for s in val} - set(mapping)
        if missing:
            raise DatasetError(f"{base / 'list_val.txt'}: ids {sorted(missing)[:5]} are not in list_train.txt")
        val = [Sample(s.path, mapping[s.pid], s.camid) for s in val]
    return ReidDataset("msmt17", relabel(train), query, gallery, protocol="market", val=val, root=str(base))
