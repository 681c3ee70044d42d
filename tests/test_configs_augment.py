"""Each recipe's configs resolve to the input pipeline and epoch of its released code (for every data
set of the network)."""
from __future__ import annotations

from pathlib import Path

import pytest

from reid.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NO_JITTER = {"augment.color_jitter.prob": 0.0}
# Zhong et al.'s RandomErasing as the releases run it after Normalize: uniform aspect, 100 attempts,
# fill 0 in normalised units (mean=[0, 0, 0]: MGN-pytorch, LAG-Net, RGA-Net, BDB's Cutout) ...
ERASING = {"augment.erasing.prob": 0.5, "augment.erasing.area": [0.02, 0.4], "augment.erasing.aspect": 0.3,
           "augment.erasing.aspect_sampling": "uniform", "augment.erasing.attempts": 100,
           "augment.erasing.fill": "mean"}
# ... or BoT's mean=PIXEL_MEAN, written as is into the normalised image
BOT_ERASING = {**ERASING, "augment.erasing.fill": "constant", "augment.erasing.fill_value": [0.485, 0.456, 0.406]}
MGN_PYTORCH = {"input.interpolation": "bicubic", "augment.crop": "none", **NO_JITTER, **ERASING}

RECIPES = {  # network: keys of the resolved config (sampler.epoch included)
    "bot": {"augment.crop": "pad", "augment.pad": 10, "augment.crop_prob": 1.0, **NO_JITTER, **BOT_ERASING,
            "sampler.epoch": "images"},
    "pcb": {"augment.crop": "none", "augment.erasing.prob": 0.0, **NO_JITTER, "sampler.epoch": "images"},
    "mgn": {**MGN_PYTORCH, "sampler.epoch": "identities", "sampler.last_batch": "keep"},
    "fusion": {**MGN_PYTORCH, "sampler.epoch": "identities", "sampler.last_batch": "keep"},
    "lagnet": {**MGN_PYTORCH, "sampler.epoch": "identities", "sampler.last_batch": "keep"},
    "rganet": {"input.interpolation": "bilinear", "augment.crop": "upscale", "augment.crop_scale": 1.125,
               "augment.crop_prob": 0.5, **NO_JITTER, **ERASING, "sampler.epoch": "identities",
               "sampler.last_batch": "drop"},
    "bdb": {"input.interpolation": "bilinear", "augment.crop": "none", **NO_JITTER,  # Cutout: one 64x64 square
            "augment.erasing.prob": 0.5, "augment.erasing.area": [1 / 12, 1 / 12], "augment.erasing.aspect": 1.0,
            "augment.erasing.fill": "mean", "sampler.epoch": "identities", "sampler.last_batch": "drop"},
    "mmga": {"augment.crop": "upscale", "augment.crop_scale": 1.125, **BOT_ERASING,  # [choice] BoT's
             "sampler.epoch": "images"},
    "laganet": {"augment.erasing.aspect_sampling": "uniform", "augment.erasing.attempts": 100},  # [choice]
}


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


@pytest.mark.parametrize("network", sorted(RECIPES))
def test_recipe_input_pipeline_and_epoch(network):
    """Body configs only: RGA-Net on the hand sets takes the hand input pipeline (docs/fidelity.md)."""
    paths = sorted(p for p in CONFIGS.glob(f"{network}/*.yaml")
                   if network != "rganet" or not p.stem.startswith(("hands11k", "hd")))
    assert len(paths) >= 5
    for path in paths:
        cfg = load_config(path)
        assert {k: _get(cfg, k) for k in RECIPES[network]} == RECIPES[network], path.name
        assert cfg.augment.flip_prob == 0.5


@pytest.mark.parametrize("override, hint", [("augment.erasing.fill=constnt", "constant"),
                                            ("augment.erasing.aspect_sampling=loguniform", "log_uniform")])
def test_erasing_choices_are_checked_at_load(override, hint):
    with pytest.raises(ConfigError, match=rf"'{override.split('=')[0]}' expects one of .*did you mean '{hint}'"):
        load_config(None, [override])
