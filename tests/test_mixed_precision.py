"""Mixed precision numerics: a short bf16-autocast run tracks the fp32 loss curve (CPU autocast)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nettools import record_losses

from reid.config import load_config
from reid.engine import Trainer

ROOT = Path(__file__).resolve().parents[1]


def losses(tmp: Path, amp: str, device: torch.device) -> list[float]:
    cfg = load_config(ROOT / "configs/quickstart.yaml", [
        f"output_dir={tmp / amp}", f"data.cache_dir={tmp / 'cache'}", f"device={device}", "data.workers=1",
        "dataset.name=synthetic", f"dataset.root={tmp / 'datasets'}",
        "dataset.num_ids=16", "dataset.num_test_ids=4", "dataset.images_per_id=8",
        "input.size=[64,32]", "sampler.num_ids=4", "sampler.num_instances=4", "augment.erasing.prob=0",
        "model.name=bot", "model.backbone={name: resnet18, last_stride: 1, pretrained: false}",
        "optimizer.lr=3e-4", "schedule.warmup_epochs=0", "schedule.name=constant",
        f"train.amp='{amp}'", "train.epochs=1", "train.iters_per_epoch=5", "train.eval_before=false",
    ])
    trainer = Trainer(cfg)
    seen = record_losses(trainer)
    trainer.train_epoch(0)
    return seen


@pytest.mark.cuda_capable
def test_bf16_tracks_fp32_loss_curve(tmp_path, device):
    fp32 = torch.tensor(losses(tmp_path, "off", device))
    bf16 = torch.tensor(losses(tmp_path, "bf16", device))
    assert len(fp32) == len(bf16) == 5 and torch.isfinite(bf16).all()
    rel = (bf16 - fp32).abs() / fp32.abs()
    assert rel[0] < 0.02, rel  # same weights, same batch: bf16 rounding only
    assert rel.max() < 0.1 and rel.mean() < 0.05, rel  # the curves stay together
