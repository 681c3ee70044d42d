"""Feature extraction from a uint8 image store."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm


def normalize_parts(f: torch.Tensor, parts: int = 1) -> torch.Tensor:
    """[N, D] -> [N, D], each of ``parts`` equal consecutive slices of a row L2-normalised on its own."""
    n, d = f.shape
    if parts < 1 or d % parts:
        raise ValueError(f"test.norm_parts = {parts} does not divide the feature width {d}")
    return torch.nn.functional.normalize(f.reshape(n, parts, d // parts), dim=2).reshape(n, d)


@torch.inference_mode()
def extract_features(
    model: torch.nn.Module,
    images: np.ndarray | torch.Tensor,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 128,
    flip: bool = False,
    normalize: bool = True,
    norm_parts: int = 1,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> torch.Tensor:
    """Retrieval features [N, D] (CPU float32) of ``images`` uint8 [N, H, W, 3].

    Each uint8 batch is moved to ``device`` and passed through ``preprocess`` (-> float
    [B, 3, H, W]) and ``model`` (eval mode; returns a dict with ``"features"`` [B, D]). With
    ``flip`` the features of the image and of its horizontal mirror are averaged; with
    ``normalize`` the result is L2-normalised: as a whole (``norm_parts=1``) or as ``norm_parts`` equal
    consecutive slices each on its own (PCB's release: 6 stripes of 2,048). The model's training
    mode is restored afterwards.
    """
    device = torch.device(device)
    n = len(images)
    was_training = model.training
    model.eval()
    out: list[torch.Tensor] = []
    try:
        for start in tqdm(range(0, n, batch_size), desc="features", disable=not progress,
                          leave=False, unit="batch"):
            chunk = images[start:start + batch_size]
            batch = (chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.array(chunk)))
            batch = batch.to(device, non_blocking=True)
            x = preprocess(batch)
            f = model(x)["features"].float()
            if flip:
                f = f + model(torch.flip(x, dims=[3]))["features"].float()
                f = f / 2
            if normalize:
                f = normalize_parts(f, norm_parts)
            out.append(f.cpu())
    finally:
        model.train(was_training)
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)
