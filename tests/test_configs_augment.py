"""Each recipe's configs resolve to the augmentation and epoch of its released code (for every data set
of the network; the other keys of the augment section keep their defaults)."""
from __future__ import annotations

from pathlib import Path

import pytest

from reid.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NO_JITTER = {"color_jitter.prob": 0.0}
ERASING = {"erasing.prob": 0.5, "erasing.area": [0.02, 0.4], "erasing.aspect": 0.3, "erasing.fill": "mean"}
NO_CROP = {"crop": "none", **NO_JITTER, **ERASING}  # MGN-pytorch: resize, flip, erasing

RECIPES = {  # network: (augment keys, sampler.epoch, sampler.last_batch or None)
    "bot": ({"crop": "pad", "pad": 10, "crop_prob": 1.0, **NO_JITTER, **ERASING}, "images", None),
    "pcb": ({"crop": "none", "erasing.prob": 0.0, **NO_JITTER}, "images", None),
    "mgn": (NO_CROP, "identities", "keep"),
    "fusion": (NO_CROP, "identities", "keep"),
    "lagnet": (NO_CROP, "identities", "keep"),
    "rganet": ({"crop": "upscale", "crop_scale": 1.125, "crop_prob": 0.5, **NO_JITTER, **ERASING},
               "identities", "drop"),
    "bdb": ({"crop": "none", **NO_JITTER, "erasing.prob": 0.5, "erasing.area": [1 / 12, 1 / 12],
             "erasing.aspect": 1.0, "erasing.fill": "mean"}, "identities", "drop"),  # Cutout 64x64
    "mmga": ({"crop": "upscale", "crop_scale": 1.125, **ERASING}, "images", None),
}


def _get(section, dotted):
    for part in dotted.split("."):
        section = section[part]
    return section


@pytest.mark.parametrize("network", sorted(RECIPES))
def test_recipe_augmentation_and_epoch(network):
    augment, epoch, last_batch = RECIPES[network]
    paths = sorted(CONFIGS.glob(f"{network}/*.yaml"))
    assert len(paths) >= 5
    for path in paths:
        cfg = load_config(path)
        assert {k: _get(cfg.augment, k) for k in augment} == augment, path.name
        assert cfg.augment.flip_prob == 0.5
        assert cfg.sampler.epoch == epoch, path.name
        if last_batch is not None:
            assert cfg.sampler.last_batch == last_batch, path.name
