"""DukeMTMC-reID: ``DukeMTMC-reID/{bounding_box_train,query,bounding_box_test}/PPPP_cC_fFFFFFFF.jpg``."""
from __future__ import annotations

import re
from pathlib import Path

from reid.registry import DATASETS

from .base import ReidDataset
from .market import find_market_dir, read_market_layout

DUKE_DIR = "DukeMTMC-reID"
DUKE_PATTERN = re.compile(r"(?P<pid>-?\d{1,8})_c(?P<cam>\d{1,3})_f\d+", re.ASCII)
DUKE_FORMAT = "PPPP_cC_fFFFFFFF.jpg (e.g. 0001_c2_f0046182.jpg), cameras 1..8"
DUKE_URL = "https://github.com/layumi/DukeMTMC-reID_evaluation (DukeMTMC-reID.zip)"
#: Published split sizes (ids, images, cameras); train includes validation images. See docs/datasets.md.
PUBLISHED = {
    "dukemtmcreid": {"train": (702, 16522, 8), "query": (702, 2228, 8), "gallery": (1110, 17661, 8)},
}


def duke_hint(root: Path) -> str:
    return (
        f"expected {root}/{DUKE_DIR}/{{bounding_box_train,query,bounding_box_test}}/ with files named "
        f"{DUKE_FORMAT}; DukeMTMC-reID: {DUKE_URL}; see docs/datasets.md"
    )


@DATASETS.register("dukemtmcreid")
def dukemtmcreid(root: str = "datasets") -> ReidDataset:
    """DukeMTMC-reID: 702 / 16,522 train, 702 / 2,228 query, 1,110 / 17,661 gallery, 8 cameras."""
    base = find_market_dir(root, DUKE_DIR)
    return read_market_layout(base, "dukemtmcreid", duke_hint(Path(root)), DUKE_PATTERN, DUKE_FORMAT,
                              cameras=8)
