"""Shared helpers of the network-family tests: their config files, reduced settings, random batches."""
from __future__ import annotations

from pathlib import Path

import torch

from reid.config import load_config

ROOT = Path(__file__).resolve().parents[1]
BODY_SETS = ("market1501", "dukemtmcreid", "cuhk03_labeled", "cuhk03_detected", "msmt17")
R18 = {"name": "resnet18", "last_stride": 1, "pretrained": False}
SIZE = (64, 32)


def config_files(net: str) -> list[Path]:
    """Every experiment config of a family (``configs/<net>/**``, bases excluded)."""
    return sorted(p for p in (ROOT / "configs" / net).rglob("*.yaml") if "_base_" not in p.parts)


def load(path: Path, *overrides: str):
    """The resolved config of ``path`` with ``KEY=VALUE`` overrides."""
    return load_config(path, list(overrides))


def batch_of(n_ids: int = 2, k: int = 4, size=SIZE, seed: int = 0) -> dict:
    """Random images [n_ids * k, 3, H, W] with pids in P x K order."""
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randn(n_ids * k, 3, *size, generator=g),
            "pids": torch.arange(n_ids).repeat_interleave(k)}


def trainer_parts(cfg, num_classes: int = 2, input_size=None):
    """(model in train mode, losses, optimiser) of ``cfg``, built after seeding torch with 0."""
    from reid.engine.optim import build_optimizer
    from reid.losses import build_losses
    from reid.models import build_model

    torch.manual_seed(0)
    model = build_model(cfg.model, num_classes, input_size=input_size).train()
    return model, build_losses(cfg.losses), build_optimizer(cfg.optimizer, model)


def train_step(model, losses, optimizer, batch: dict):
    """One forward + losses + backward + optimiser step; returns (total, {label: value})."""
    total, parts = losses(model(batch["images"]), batch)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    return total, parts


def train_steps(cfg, batch: dict, steps: int, num_classes: int = 2, input_size=None) -> list[float]:
    """Train ``cfg``'s model ``steps`` steps on ``batch``; returns the total loss of each step."""
    model, losses, optimizer = trainer_parts(cfg, num_classes, input_size)
    return [float(train_step(model, losses, optimizer, batch)[0].detach()) for _ in range(steps)]


def record_losses(trainer) -> list[float]:
    """Wrap ``trainer.losses`` so that every step's total loss is appended to the returned list."""
    seen: list[float] = []
    original = trainer.losses

    def spy(outputs, batch):
        total, parts = original(outputs, batch)
        seen.append(float(total.detach()))
        return total, parts

    trainer.losses = spy
    return seen


def missing_body_configs(net: str) -> set[str]:
    """The body data sets' configs (``<set>.yaml``) that ``configs/<net>/`` lacks."""
    names = {p.relative_to(ROOT / "configs" / net).as_posix() for p in config_files(net)}
    return {f"{d}.yaml" for d in BODY_SETS} - names


def config_id(path: Path) -> str:
    """A config's test id: its path under ``configs/``."""
    return path.relative_to(ROOT / "configs").as_posix()


def reduced_step(path: Path, sized: bool = False, batch: dict | None = None):
    """One training step of ``path``'s network with a ResNet-18 trunk at SIZE on ``batch`` (default
    :func:`batch_of`); ``sized`` builds size-dependent layers for ``input.size``. Returns (total,
    {label: value})."""
    small = load(path, "model.backbone={name: resnet18, pretrained: false}", f"input.size=[{SIZE[0]},{SIZE[1]}]")
    model, losses, optimizer = trainer_parts(small, input_size=small.input.size if sized else None)
    return train_step(model, losses, optimizer, batch if batch is not None else batch_of())


def body_maps(b: int, size) -> torch.Tensor:
    """Person-like LIP label maps [B, H, W]: a centred body, upper clothes above pants."""
    h, w = size
    labels = torch.zeros(b, h, w, dtype=torch.long)
    labels[:, h // 8:h // 2, w // 4:3 * w // 4] = 5
    labels[:, h // 2:7 * h // 8, w // 4:3 * w // 4] = 9
    return labels


def masked_batch_of(n_ids: int = 2, k: int = 4, size=SIZE, seed: int = 0) -> dict:
    """:func:`batch_of` with body-part masks (``masks`` [B, 3, H, W], all valid) for MMGA's mask loss."""
    from reid.losses.mask import group_labels

    g = torch.Generator().manual_seed(seed)
    labels = body_maps(n_ids * k, size)
    return {"images": torch.randn(n_ids * k, 3, *size, generator=g),
            "pids": torch.arange(n_ids).repeat_interleave(k),
            "masks": group_labels(labels), "mask_valid": torch.ones(n_ids * k, dtype=torch.bool)}


def tiny_run_overrides(tmp_path: Path, *extra: str, ids: int = 24, test_ids: int = 12, images_per_id: int = 8,
                       size: str = "[64,32]", p: int = 4, k: int = 4, epochs: int = 1, iters: int = 3) -> list[str]:
    """Overrides for a seconds-long BoT run on a synthetic set: ResNet-18, constant lr, no warm-up,
    ``epochs`` epochs of ``iters`` steps, everything written under ``tmp_path``."""
    return [
        f"output_dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}",
        "dataset.name=synthetic", f"dataset.root={tmp_path / 'datasets'}",
        f"dataset.num_ids={ids}", f"dataset.num_test_ids={test_ids}", f"dataset.images_per_id={images_per_id}",
        f"input.size={size}", f"sampler.num_ids={p}", f"sampler.num_instances={k}",
        "model.name=bot", "model.backbone={name: resnet18, last_stride: 1, pretrained: false}",
        "optimizer.lr=1e-3", "schedule.warmup_epochs=0", "schedule.name=constant",
        f"train.epochs={epochs}", f"train.iters_per_epoch={iters}", "test.batch_size=64", *extra,
    ]
