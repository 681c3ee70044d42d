"""Shared helpers of the inference tests: a tiny synthetic data set and checkpoints in the trainer's
format (randomly initialised model + resolved config + class count)."""
from __future__ import annotations

from pathlib import Path

import torch

from reid.config import load_config
from reid.engine.checkpoint import save_checkpoint, to_plain
from reid.models import build_model

ROOT = Path(__file__).resolve().parents[1]
SIZE = (64, 32)


def tiny_overrides(folder: Path, model: str = "bot", *extra: str) -> list[str]:
    """A tiny synthetic set (real files, 48x24 so that they are resized) and a ResNet-18 trunk at SIZE."""
    return [
        f"dataset={{name: synthetic, root: {folder / 'data'}, num_ids: 4, num_test_ids: 3, images_per_id: 4, "
        "height: 48, width: 24, masks: false}",
        f"data.cache_dir={folder / 'cache'}", "data.workers=1", "device=cpu", f"output_dir={folder / 'run'}",
        f"model.name={model}", "model.backbone={name: resnet18, last_stride: 1, pretrained: false}",
        f"input.size=[{SIZE[0]},{SIZE[1]}]", "test.batch_size=8", *extra,
    ]


def save_tiny_checkpoint(path: Path, config: str | Path | None, overrides: list[str], num_classes: int = 4,
                         stored_config: bool = True, seed: int = 0) -> Path:
    """A randomly initialised model of ``config`` saved as the trainer saves it (``stored_config``:
    with ``config`` and ``num_classes``, as written since checkpoints carry them; else weights only).
    BatchNorm running statistics are randomised so that features differ between images."""
    cfg = load_config(config, overrides)
    torch.manual_seed(seed)
    model = build_model(cfg.model, num_classes, input_size=cfg.input.size)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {"model": model.state_dict(), "epoch": 0}
    if stored_config:
        state.update(config=to_plain(cfg.to_dict()), num_classes=num_classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(state, path)
    return path
