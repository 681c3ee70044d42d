"""train.select_on=val: held-out training images pick the best checkpoint; without them, a clear error."""
from __future__ import annotations

import json

import pytest

from reid.config import ConfigError, load_config
from reid.engine import Trainer
from reid.testing.replicas import write_replica


def overrides(tmp_path, *extra):
    return [f"output_dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}", "input.size=[32,32]",
            "model.backbone={name: resnet18, last_stride: 1, pretrained: false}", "sampler.num_ids=4",
            "sampler.num_instances=2", "train.epochs=1", "train.iters_per_epoch=2", "schedule.warmup_epochs=0",
            "train.select_on=val", "test.batch_size=256", *extra]


def test_validation_split_selects_the_best_checkpoint(tmp_path):
    root = write_replica("hd", tmp_path / "data", scale=0.05, size=(32, 32))
    cfg = load_config(None, overrides(tmp_path, "dataset.name=hd", f"dataset.root={root}", "dataset.num_draws=2"))
    summary = Trainer(cfg).fit()
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["best"]["selected_on"] == "val" and 0 <= saved["best"]["val"]["mAP"] <= 1
    assert saved["history"][0]["val"]["mAP"] == saved["best"]["score"]
    assert summary["final"]["draws"] == 2 and "mAP_std" in summary["final"]


def test_select_on_val_without_a_validation_split_is_an_error(tmp_path):
    cfg = load_config(None, overrides(tmp_path, "dataset.name=synthetic", f"dataset.root={tmp_path / 'd'}",
                                      "dataset.num_ids=8", "dataset.num_test_ids=4", "dataset.images_per_id=4"))
    with pytest.raises(ConfigError, match="no validation images"):
        Trainer(cfg)
