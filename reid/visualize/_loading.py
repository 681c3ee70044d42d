"""Checkpoint and image loading for the figures (a stand-in until ``reid.inference`` lands).

A reid checkpoint carries its resolved ``config`` and ``num_classes``; the network is rebuilt from
them and the images get the test preprocessing (resize to ``input.size`` with
``input.interpolation``, then the mean/std normalisation).
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reid.config import Config, load_config, save_config
from reid.data.store import INTERPOLATIONS
from reid.data.transforms import to_input
from reid.engine.checkpoint import CheckpointError, load_checkpoint
from reid.models import build_model
from reid.registry import UserError


def checkpoint_config(config: dict, overrides: Sequence[str] = ()) -> Config:
    """A checkpoint's resolved config with ``KEY=VALUE`` overrides applied and validated."""
    if not overrides:
        return Config.wrap(config)
    with tempfile.TemporaryDirectory() as tmp:
        save_config(config, Path(tmp) / "config.yaml")
        return load_config(Path(tmp) / "config.yaml", list(overrides))


def load_run_model(checkpoint: str | Path, device: str | torch.device = "cpu",
                   overrides: Sequence[str] = ()) -> tuple[torch.nn.Module, Config]:
    """(model in eval mode on ``device``, the checkpoint's config with ``overrides``) for a
    checkpoint written by reid: ``reid.inference.load_model`` where that package exists."""
    try:
        from reid.inference import load_model
    except ImportError:  # a tree without reid.inference: the same from the checkpoint's keys
        load_model = None
    if load_model is not None:
        return load_model(checkpoint, device, overrides=list(overrides))
    state = load_checkpoint(checkpoint)
    if "config" not in state or "num_classes" not in state:
        raise CheckpointError(f"{checkpoint}: has no 'config'/'num_classes'; it was not written by "
                              "tools/train.py (the figures need a checkpoint that carries its config)")
    cfg = checkpoint_config(state["config"], overrides)
    model = build_model(cfg.model, int(state["num_classes"]), input_size=cfg.input.size)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg


def read_images(paths: Sequence[str | Path], size: Sequence[int], interpolation: str = "bilinear") -> np.ndarray:
    """uint8 [N, H, W, 3] of the images at ``paths`` resized to ``size`` (H, W), as the test store."""
    resample = INTERPOLATIONS[interpolation]
    out = np.empty((len(paths), int(size[0]), int(size[1]), 3), np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if im.size != (size[1], size[0]):
                    im = im.resize((int(size[1]), int(size[0])), resample)
                out[i] = np.asarray(im, dtype=np.uint8)
        except (OSError, ValueError) as exc:
            raise UserError(f"{p}: cannot read image ({exc})") from None
    return out


def model_input(images: np.ndarray, cfg: Config, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 [N, H, W, 3] -> the normalised network input [N, 3, H, W]."""
    return to_input(images, cfg.input.pixel_mean, cfg.input.pixel_std, device)
