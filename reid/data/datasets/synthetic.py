"""``synthetic``: a generated Market-format data set for demos and quick runs (``make demo``).

The images come from :mod:`reid.data.persons`; this file only caches them under
``<root>/synthetic-<hash of parameters>/Market-1501-v15.09.15`` (built in a temporary folder, then
renamed) and reads them back with the Market-1501 parser, body-part masks included.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from reid.atomic_io import make_folder, temporary_folder
from reid.checks import Count, Dim, Prob, Seed
from reid.registry import DATASETS

from ..persons import GENERATOR_VERSION, generate_market
from .base import DatasetError, ReidDataset
from .market import MARKET_DIR, market_layout_hint, read_market_layout


@DATASETS.register("synthetic")
def synthetic(
    root: str = ".cache/reid/datasets",
    num_ids: Dim = 120,
    num_test_ids: Dim = 100,
    images_per_id: Dim = 16,
    cameras: Dim = 6,
    height: Dim = 128,
    width: Dim = 64,
    seed: Seed = 0,
    distractors: Count = 0,
    junk: Count = 0,
    query_per_id: Dim = 2,
    occlusion_prob: Prob = 0.3,
    masks: bool = True,
) -> ReidDataset:
    """Synthetic Market-format set: ``num_ids`` training and ``num_test_ids`` test identities.

    Each identity is seen by 2+ cameras with 2+ images each. Test identities give ``query_per_id``
    query images (one per distinct camera); the rest go to the gallery, with ``distractors`` (pid 0)
    and ``junk`` (pid -1) images. Generated once into
    ``root/synthetic-<hash>/Market-1501-v15.09.15`` and read back by the Market-1501 parser.
    """
    if num_ids < 1 or num_test_ids < 1 or cameras < 2 or images_per_id < 4:
        raise DatasetError(
            "synthetic: need num_ids >= 1, num_test_ids >= 1, cameras >= 2, images_per_id >= 4"
        )
    params = dict(num_ids=num_ids, num_test_ids=num_test_ids, images_per_id=images_per_id,
                  cameras=cameras, height=height, width=width, seed=seed, distractors=distractors,
                  junk=junk, query_per_id=query_per_id, occlusion_prob=occlusion_prob, masks=masks,
                  version=GENERATOR_VERSION)
    key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(root).expanduser() / f"synthetic-{key}"
    if not (folder / MARKET_DIR).is_dir():
        make_folder(folder.parent, "dataset.root")
        tmp = temporary_folder(folder, "the synthetic data set")  # a killed run's is removed first
        try:
            generate_market(tmp / MARKET_DIR, **{k: v for k, v in params.items() if k != "version"})
            (tmp / "params.json").write_text(json.dumps(params, indent=1))
            try:
                os.rename(tmp, folder)
            except OSError:  # another process finished first
                if not (folder / MARKET_DIR).is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    base = folder / MARKET_DIR
    ds = read_market_layout(base, "synthetic", market_layout_hint(folder))
    return ds
