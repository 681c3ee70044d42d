"""A reduced LAGA-Net (ResNet-18 trunk, 64x32 images, all four branches with CAM and SAM-RPE, one
shared layer4 and 256-D embeddings to keep it cheap) trained for 40 CPU iterations on the synthetic
set through the trainer: the loss goes down and the mAP beats the untrained network's."""
from __future__ import annotations

from pathlib import Path

import pytest

from reid.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_reduced_laganet_learns_on_synthetic_data(tmp_path):
    from reid import engine

    cfg = load_config(ROOT / "configs" / "laganet" / "market1501.yaml", [
        f"output_dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}",
        "dataset={name: synthetic, _delete_: true}", f"dataset.root={tmp_path / 'datasets'}",
        "dataset.num_ids=24", "dataset.num_test_ids=12", "dataset.images_per_id=8",
        "input.size=[64,32]", "augment.erasing.prob=0", "augment.color_jitter.prob=0",
        "sampler.num_ids=4", "sampler.num_instances=4",
        "model.backbone={name: resnet18, last_stride: 1, pretrained: false}",
        "model.share_layer4=true", "model.embedding_dim=256",
        "optimizer.lr=1e-3", "optimizer.lr_mults={backbone: 1.0}",
        "schedule.name=constant", "schedule.warmup_epochs=0",
        "train.epochs=4", "train.iters_per_epoch=10", "train.eval_before=true", "test.batch_size=64",
    ])
    trainer = engine.Trainer(cfg)
    assert len(trainer.model.head_names) == 6
    losses, original = [], trainer.losses

    def spy(outputs, batch):
        total, parts = original(outputs, batch)
        losses.append(float(total.detach()))
        return total, parts

    trainer.losses = spy
    result = trainer.fit()
    assert len(losses) == 40 and sum(losses[-10:]) < 0.95 * sum(losses[:10])
    assert result["final"]["mAP"] > result["before"]["mAP"] + 0.05
