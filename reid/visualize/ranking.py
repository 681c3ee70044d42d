"""Ranked lists of a checkpoint on a data set's test protocol (first draw), for the figures."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from reid.config import Config
from reid.data.datasets.base import ReidDataset
from reid.evaluation import evaluate_rank
from reid.inference import load_model
from reid.visualize.ranked_list import ranked_list_grid


@dataclasses.dataclass
class Ranking:
    """Distances [Q, G] of the first draw, its labels and test images (uint8 [N, H, W, 3])."""

    name: str
    cfg: Config
    dataset: ReidDataset
    dist: np.ndarray
    q_pids: np.ndarray
    g_pids: np.ndarray
    q_camids: np.ndarray
    g_camids: np.ndarray
    q_images: np.ndarray
    g_images: np.ndarray

    def cmc(self, max_rank: int = 20) -> np.ndarray:
        """CMC [max_rank] (fractions) under the data set's protocol."""
        result = evaluate_rank(torch.as_tensor(self.dist), self.q_pids, self.g_pids, self.q_camids, self.g_camids,
                               max_rank=max_rank, protocol=self.dataset.protocol)
        return np.asarray(result.cmc)

    def valid_queries(self) -> np.ndarray:
        """[Q] bool: queries with a true match outside their own camera (every one for hand sets)."""
        same = self.q_pids[:, None] == self.g_pids[None, :]
        if self.dataset.protocol != "hands":
            same &= self.q_camids[:, None] != self.g_camids[None, :]
        return same.any(axis=1)

    def grid(self, queries: Sequence[int], topk: int) -> np.ndarray:
        """uint8 ranked-list grid of the given query indices (true matches green, false red)."""
        q = np.asarray(queries)
        return np.asarray(ranked_list_grid(
            self.q_images[q], self.g_images, self.dist[q], self.q_pids[q], self.g_pids,
            self.q_camids[q], self.g_camids, topk=topk, ignore_same_camera=self.dataset.protocol != "hands"))


#: Rankings of this process by (checkpoint, overrides, device), for several figures of one run.
_CACHE: dict[tuple, Ranking] = {}


def rank_checkpoint(checkpoint: str | Path, overrides: Sequence[str] = (), device: str = "cpu",
                    dataset: ReidDataset | None = None, name: str | None = None) -> Ranking:
    """Evaluate ``checkpoint`` (its own config with ``overrides``) on ``dataset`` (default: the data
    set of its config) and keep the first draw's distances and images. Results on the config's own
    data set are kept for the process (one evaluation per checkpoint for several figures)."""
    key = (str(Path(checkpoint).resolve()), tuple(overrides), str(device))
    if dataset is None and key in _CACHE:
        return dataclasses.replace(_CACHE[key], name=name or _CACHE[key].name)
    from reid.data import build_dataset
    from reid.engine import Evaluator

    model, cfg = load_model(checkpoint, device, overrides=overrides)
    own = dataset is None
    dataset = dataset if dataset is not None else build_dataset(cfg)
    evaluator = Evaluator(cfg, dataset, torch.device(device))
    evaluator.evaluate(model)
    feats = evaluator.last_features
    query, gallery = evaluator.draws[0]
    qi = [evaluator.index[s] for s in query]
    gi = [evaluator.index[s] for s in gallery]
    dist = evaluator.distances(feats[qi].to(device), feats[gi].to(device)).cpu().numpy()
    images = np.asarray(evaluator.images)
    ranking = Ranking(name or str(checkpoint), cfg, dataset, dist,
                      np.array([s.pid for s in query]), np.array([s.pid for s in gallery]),
                      np.array([s.camid for s in query]), np.array([s.camid for s in gallery]),
                      images[qi], images[gi])
    if own:
        _CACHE[key] = ranking
    return ranking
