"""HD: PolyU hand dorsal images (minor knuckle), protocol of Baisa et al.

Layout: ``HD/Original Images/1-501/<id>_<n>.jpg`` and ``HD/Original Images/502-712/<id>_<n>.jpg``.
Sorted ids of ``1-501``: first half train (one seeded image per id held out in ``val``), the rest
test. Gallery = one random image per test id + every image of ``502-712`` (ids offset by
``ID_OFFSET`` so they never match); query = the other test images. Redrawn with seeds
``0..num_draws-1`` (``draws``). Cameras: train/query 0, gallery 1.
"""
from __future__ import annotations

import re
from pathlib import Path

from reid.checks import Dim, Seed
from reid.data.protocols import HANDS
from reid.registry import DATASETS

from .base import DatasetError, ReidDataset, Sample, relabel
from .common import GALLERY_CAM, ID_OFFSET, QUERY_CAM, find_dir, group_by_pid, hold_out, list_images, pick_one_per_id
from .common import with_cam as _with_cam

NAME_RE = re.compile(r"^(?P<pid>\d{1,8})_(?P<n>\d+)\.\w+$", re.ASCII)
MAIN, EXTRA = "1-501", "502-712"
#: Published split sizes (ids, images, cameras); train includes validation images. See docs/datasets.md.
PUBLISHED = {"hd": {"train": (251, 2407, 1), "query": (251, 1992, 1), "gallery": (464, 1593, 1)}}
HINT = (
    "HD: expected <root>/HD/Original Images/1-501/<id>_<n>.jpg and <root>/HD/Original Images/502-712/ "
    "(PolyU-IITD hand dorsal database, http://www4.comp.polyu.edu.hk/~csajaykr/knuckleV2.htm); "
    "see docs/datasets.md"
)


def read_hd_folder(folder: Path) -> list[Sample]:
    """Camera-0 samples of one HD folder, ids from ``<id>_<n>.jpg``."""
    if not folder.is_dir():
        raise DatasetError(f"HD: folder not found: {folder}; {HINT}")
    samples = []
    for name in list_images(folder):
        m = NAME_RE.match(name)
        if m is None:
            raise DatasetError(f"HD: {folder / name}: expected a name <id>_<n>.jpg")
        samples.append(Sample(str(folder / name), int(m.group("pid")), QUERY_CAM))
    if not samples:
        raise DatasetError(f"HD: no images in {folder}; {HINT}")
    return sorted(samples, key=lambda s: (s.pid, s.path))


@DATASETS.register("hd")
def hd(root: str = "datasets", seed: Seed = 0, num_draws: Dim = HANDS.draws) -> ReidDataset:
    """HD: 251 / 2,407 train, 1,992 query, 1,593 gallery (464 ids) on the real data."""
    base = find_dir(root, ("HD/Original Images", "HD", ""), "HD", HINT)
    if not (base / MAIN).is_dir() and (base / "Original Images").is_dir():
        base = base / "Original Images"
    groups = group_by_pid(read_hd_folder(base / MAIN))
    extra = _with_cam(read_hd_folder(base / EXTRA), GALLERY_CAM, ID_OFFSET)
    ids = sorted(groups)
    n_train = len(ids) - len(ids) // 2
    val, train = hold_out({pid: groups[pid] for pid in ids[:n_train]}, seed)
    mapping = {pid: i for i, pid in enumerate(sorted({s.pid for s in train}))}
    val = [Sample(s.path, mapping[s.pid], s.camid) for s in val]
    tests = {pid: groups[pid] for pid in ids[n_train:]}
    draws = []
    for d in range(num_draws):
        picked, rest = pick_one_per_id(tests, d)
        draws.append((_with_cam(rest, QUERY_CAM), _with_cam(picked, GALLERY_CAM) + extra))
    query, gallery = draws[0] if draws else ([], [])
    return ReidDataset("hd", relabel(train), query, gallery, protocol=HANDS.name, val=val, draws=draws, root=str(base))
