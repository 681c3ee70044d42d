"""Market-1501 and a general reader for folders of Market-style image names.

Market-1501 layout: ``Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/`` with
names ``PPPP_cCsS_FFFFFF_NN.jpg`` (pid, camera C in 1..6, sequence S, frame, box index). pid ``-1``
is junk (dropped everywhere); pid ``0000`` is a distractor (kept in the gallery only). An optional
mirror folder ``masks/<split>/<stem>.png`` holds body-part label maps (``Sample.mask``).
"""
from __future__ import annotations

import re
from pathlib import Path

from reid.registry import DATASETS

from .base import DatasetError, ReidDataset, Sample, relabel, require_dir

#: Market-1501 names: ``0002_c1s1_000451_03.jpg``; junk is ``-1_c1s1_...``.
MARKET_PATTERN = re.compile(r"(?P<pid>-?\d{1,8})_c(?P<cam>\d{1,3})s\d+_\d+_\d+", re.ASCII)
MARKET_FORMAT = "PPPP_cCsS_FFFFFF_NN.jpg (e.g. 0002_c1s1_000451_03.jpg)"
MARKET_DIR = "Market-1501-v15.09.15"
MARKET_SPLITS = ("bounding_box_train", "query", "bounding_box_test")
MARKET_URL = "https://zheng-lab.cecs.anu.edu.au/Project/project_reid.html"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
#: Published split sizes (ids, images, cameras); train includes validation images. See docs/datasets.md.
PUBLISHED = {
    "market1501": {"train": (751, 12936, 6), "query": (750, 3368, 6), "gallery": (751, 15913, 6)},
}


def read_image_folder(
    folder: Path,
    pattern: re.Pattern,
    *,
    junk_pid: int = -1,
    drop_distractors: bool = False,
    name_format: str = "",
    mask_dir: Path | None = None,
    cameras: int | None = None,
) -> list[Sample]:
    """Samples of the images in ``folder`` (sorted by name), pid/camera parsed from each name.

    ``pattern`` must full-match the file stem and have named groups ``pid`` and ``cam`` (camera
    1-based on disk, stored 0-based). pid ``junk_pid`` is dropped; pid 0 (distractor) is dropped when
    ``drop_distractors``. Non-image files (``Thumbs.db``) are ignored; an image whose name does not
    match is a DatasetError naming the file and ``name_format``. With ``mask_dir``, ``Sample.mask``
    is ``mask_dir/<stem>.png`` where that file exists. A camera outside ``1..cameras`` (or below 1)
    is a DatasetError naming the file.
    """
    folder = Path(folder)
    samples = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        m = pattern.fullmatch(path.stem)
        if m is None:
            expected = name_format or f"a name matching {pattern.pattern!r}"
            raise DatasetError(f"{path}: unexpected file name; expected {expected}")
        pid, cam = int(m.group("pid")), int(m.group("cam"))
        if cam < 1 or (cameras is not None and cam > cameras):
            upto = f"1..{cameras}" if cameras is not None else "from 1"
            raise DatasetError(f"{path}: camera {cam} out of range; expected cameras numbered {upto}")
        if pid == junk_pid or (drop_distractors and pid == 0):
            continue
        mask = None
        if mask_dir is not None:
            candidate = Path(mask_dir) / f"{path.stem}.png"
            mask = str(candidate) if candidate.is_file() else None
        samples.append(Sample(str(path), pid, cam - 1, mask))
    return samples


def market_layout_hint(root: Path) -> str:
    return (
        f"expected {root}/{MARKET_DIR}/{{{','.join(MARKET_SPLITS)}}}/ with files named {MARKET_FORMAT} "
        f"(dataset.root may also point at {MARKET_DIR}/ itself); "
        f"Market-1501 is available from {MARKET_URL}"
    )


def find_market_dir(root: str | Path, folder: str = MARKET_DIR) -> Path:
    """``root/<folder>`` or ``root`` itself if it already holds ``bounding_box_train``."""
    root = Path(root).expanduser()
    if (root / folder / MARKET_SPLITS[0]).is_dir():
        return root / folder
    if (root / MARKET_SPLITS[0]).is_dir():
        return root
    return root / folder


def read_market_layout(base: Path, name: str, hint: str, pattern: re.Pattern = MARKET_PATTERN,
                       name_format: str = MARKET_FORMAT, protocol: str = "market",
                       cameras: int | None = None) -> ReidDataset:
    """Read ``base/{bounding_box_train,query,bounding_box_test}`` (and ``base/masks/<split>``).

    Junk is dropped everywhere, distractors (pid 0) kept in the gallery only; train is relabelled.
    """
    splits = {}
    for split in MARKET_SPLITS:
        folder = require_dir(base / split, name, hint)
        mask_dir = base / "masks" / split
        splits[split] = read_image_folder(
            folder, pattern, drop_distractors=split != "bounding_box_test", name_format=name_format,
            mask_dir=mask_dir if mask_dir.is_dir() else None, cameras=cameras,
        )
        if not splits[split]:
            raise DatasetError(f"{name}: no images in {folder}; {hint}")
    return ReidDataset(
        name=name,
        train=relabel(splits["bounding_box_train"]),
        query=splits["query"],
        gallery=splits["bounding_box_test"],
        protocol=protocol,
        root=str(base),
    )


@DATASETS.register("market1501")
def market1501(root: str = "datasets") -> ReidDataset:
    """Market-1501 from ``root/Market-1501-v15.09.15`` (or ``root`` pointing at that folder)."""
    base = find_market_dir(root)
    return read_market_layout(base, "market1501", market_layout_hint(Path(root)), cameras=6)
