"""Retrieval features of arbitrary images with a trained checkpoint, exactly as the evaluator
computes them (same decoding, :func:`reid.data.to_input` normalisation, ``test.flip`` averaging and
:func:`reid.evaluation.extract_features`)."""
from __future__ import annotations

import os
from typing import Any, Iterable

import numpy as np
import torch
from PIL import Image

from reid.data import to_input
from reid.evaluation import extract_features
from reid.evaluation.finite import check_finite
from reid.registry import UserError

from .images import read_image, resize_uint8
from .loading import load_model


class ImageInputError(UserError, ValueError):
    """An input the extractor cannot take (unreadable file, wrong shape or type)."""


class FeatureExtractor:
    """``FeatureExtractor(checkpoint)(images) -> float32 [N, D]`` (CPU), the features the evaluator
    ranks with: the model's eval output ``"features"``, averaged with the mirrored image when the
    config sets ``test.flip``, L2-normalised unless ``normalize=False``.

    ``images``: an image path or PIL image or uint8 [H, W, 3] array/tensor (any size; decoded to RGB
    and resized to ``input.size`` with ``input.interpolation``), a list of those, a uint8 batch
    [N, H, W, 3], or float tensors [3, H, W] / [N, 3, H, W] taken as network input already
    normalised with ``input.pixel_mean`` / ``pixel_std`` at ``input.size`` (only batched).
    ``device``: as in :func:`reid.inference.load_model` (None: the config's). ``config`` /
    ``overrides`` replace or amend the checkpoint's stored config.
    """

    def __init__(self, checkpoint: str | os.PathLike, device: str | torch.device | None = "cpu", batch_size: int = 64,
                 normalize: bool = True, flip: bool | None = None, config: str | os.PathLike | None = None,
                 overrides: Iterable[str] = (), progress: bool = False):
        self.checkpoint = str(checkpoint)
        self.model, self.cfg = load_model(checkpoint, device, config=config, overrides=overrides)
        self.device = next(self.model.parameters()).device
        self.batch_size, self.normalize, self.progress = int(batch_size), bool(normalize), bool(progress)
        self.flip = bool(self.cfg.test.flip) if flip is None else bool(flip)
        self.size = (int(self.cfg.input.size[0]), int(self.cfg.input.size[1]))
        self.interpolation = str(self.cfg.input.interpolation)

    @property
    def dim(self) -> int:
        """The feature length D."""
        return int(self(torch.zeros(1, 3, *self.size)).shape[1])

    def prepare(self, images: Any) -> np.ndarray | torch.Tensor:
        """``images`` (see the class docstring) -> uint8 [N, H, W, 3] at ``input.size``, or a float
        tensor [N, 3, H, W] that is already network input."""
        if isinstance(images, torch.Tensor) and images.is_floating_point():
            x = images.unsqueeze(0) if images.ndim == 3 else images
            if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != self.size:
                raise ImageInputError(f"a float tensor must be normalised network input [N, 3, {self.size[0]}, "
                                      f"{self.size[1]}], got {list(images.shape)}; pass images of any size as "
                                      "uint8 [H, W, 3] arrays, PIL images or paths")
            return x.float()
        if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
            return np.stack([self._one(im) for im in images])
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor)):
            images = [images]
        batch = [self._one(im) for im in images]
        return np.stack(batch) if batch else np.zeros((0, *self.size, 3), np.uint8)

    def _one(self, image: Any) -> np.ndarray:
        if isinstance(image, (str, os.PathLike)):
            try:
                return read_image(image, self.size, self.interpolation)
            except (OSError, ValueError, SyntaxError) as exc:
                raise ImageInputError(f"{image}: cannot read image ({exc})") from None
        if isinstance(image, Image.Image):
            return resize_uint8(image, self.size, self.interpolation)
        if isinstance(image, torch.Tensor):
            image = image.cpu().numpy()
        if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
            return resize_uint8(image, self.size, self.interpolation)
        what = f"{type(image).__name__} {getattr(image, 'dtype', '')} {list(getattr(image, 'shape', []))}".strip()
        raise ImageInputError(f"cannot take {what} as an image: expected a path, a PIL image or uint8 [H, W, 3]")

    def features(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Features [N, D] of a prepared batch (uint8 [N, H, W, 3] or float network input)."""
        if isinstance(batch, torch.Tensor) and batch.is_floating_point():
            preprocess = lambda x: x  # noqa: E731 - already network input
        else:
            preprocess = lambda x: to_input(x, self.cfg)  # noqa: E731
        feats = extract_features(self.model, batch, preprocess, batch_size=self.batch_size, flip=self.flip,
                                 normalize=self.normalize, norm_parts=int(self.cfg.test.norm_parts),
                                 device=self.device, progress=self.progress)
        check_finite(feats, f"{self.checkpoint}: features", "features", rows="images")
        return feats

    def __call__(self, images: Any) -> torch.Tensor:
        feats = self.features(self.prepare(images))
        return feats if len(feats) else torch.zeros(0, 0)

