"""The one evaluator: features for a data set's query/gallery (all draws), distances, metrics."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from reid.data import build_test_images, to_input
from reid.data.datasets.base import DatasetError, ReidDataset, Sample
from reid.engine.gather import gather_shards, shard_bounds
from reid.engine.host_memory import keep_freed_host_memory
from reid.evaluation import aqe, compute_distance, evaluate_features, evaluate_rank, extract_features, re_rank
from reid.evaluation.finite import check_finite
from reid.evaluation.rerank import FeatureReranker

log = logging.getLogger("reid")

#: Query x gallery sizes above this are evaluated chunk by chunk (MSMT17: 11,659 x 82,161), never as
#: one dense matrix; re-ranking then uses the sparse feature-based form.
DENSE_LIMIT = 60_000_000
#: The ranks reported besides mAP and mINP.
REPORTED_RANKS = (1, 5, 10)


class Evaluator:
    """Evaluates a model on ``dataset``'s test protocol (``dataset.evaluation_protocol``).

    Test images are decoded once (the uint8 store) and features are extracted once per call for
    the union of all query/gallery samples, so hand sets' 10 draws cost one forward pass. With
    several draws, each metric is the mean over draws and ``<metric>_std`` its standard deviation.
    """

    def __init__(self, cfg: Any, dataset: ReidDataset, device: torch.device):
        self.cfg = cfg
        self.dataset = dataset
        self.protocol = dataset.evaluation_protocol
        self.device = device
        if torch.device(device).type == "cpu":
            keep_freed_host_memory()
        check_draws(dataset)
        draws = dataset.draws or [(dataset.query, dataset.gallery)]
        self.draws = draws
        index: dict[Sample, int] = {}
        for query, gallery in draws:
            for s in list(query) + list(gallery):
                index.setdefault(s, len(index))
        self.samples = list(index)
        self.index = index
        self._images: np.ndarray | None = None
        self.last_features: torch.Tensor | None = None  # of the latest evaluate() call

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = build_test_images(self.cfg, self.samples)
        return self._images

    def features(self, model: torch.nn.Module) -> torch.Tensor:
        """Features [N, D] of every test sample, in ``self.samples`` order. Under DDP every rank
        extracts its contiguous share of the images and the shares are gathered (a collective:
        all ranks must call it)."""
        test = self.cfg.test
        images = self.images
        start, end = shard_bounds(len(images))
        feats = extract_features(
            model, images[start:end], lambda x: to_input(x, self.cfg), batch_size=int(test.batch_size),
            flip=bool(test.flip), normalize=bool(test.normalize), norm_parts=int(test.norm_parts),
            device=self.device, progress=start == 0,
        )
        return gather_shards(feats, len(images), self.device)

    def distances(self, qf: torch.Tensor, gf: torch.Tensor, where: str = "") -> torch.Tensor:
        """Query x gallery distances, with ``test.aqe`` and ``test.rerank`` applied (the distances
        fed to re-ranking are checked to be finite; ``where`` names the draw in that error)."""
        test = self.cfg.test
        if test.aqe:
            qf, gf = aqe(qf, gf)
        dist = compute_distance(qf, gf, metric=test.metric)
        if test.rerank:
            check_finite(dist, f"{where or self.where()}: distances", "distances", rows="query rows")
            dist = torch.as_tensor(re_rank(
                dist, compute_distance(qf, qf, metric=test.metric),
                compute_distance(gf, gf, metric=test.metric),
            ))
        return dist

    def evaluate_chunked(self, qf: torch.Tensor, gf: torch.Tensor, labels: tuple, where: str = "") -> Any:
        """Chunked evaluation for large sets (bounded memory); sparse re-ranking when enabled."""
        test = self.cfg.test
        if test.aqe:
            qf, gf = aqe(qf, gf)
        dist_fn = FeatureReranker(qf, gf, metric=test.metric, device=self.device).distances if test.rerank else None
        return evaluate_features(qf, gf, *labels, metric=test.metric, max_rank=int(test.max_rank),
                                 protocol=self.protocol, device=self.device, dist_fn=dist_fn,
                                 where=where or self.where(), stage=self.stage())

    def where(self, draw: int | None = None) -> str:
        """``data set 'NAME'`` (``, draw D`` with several draws): the source named in errors."""
        several = draw is not None and len(self.draws) > 1
        return f"data set '{self.dataset.name}'" + (f", draw {draw}" if several else "")

    def stage(self) -> str:
        """What the ranked distances are: ``re-ranked distances`` or ``distances``."""
        return "re-ranked distances" if self.cfg.test.rerank else "distances"

    def check_features(self, feats: torch.Tensor, samples: list[Sample], split: str, where: str) -> None:
        """A NonFiniteError naming ``split`` (query/gallery), how many of its images have NaN or
        infinite features and the first one's file; feats [len(samples), D]."""
        check_finite(feats, f"{where}: {split} features", "features", rows=f"{split} images",
                     name_of=lambda i: samples[i].path)

    def evaluate(self, model: torch.nn.Module, per_query: bool = False):
        """rank-1/5/10, mAP, mINP (means over draws, and ``*_std`` when there are several).

        With ``per_query`` also returns one CSV text per draw: each query's file, pid, camera, AP
        and rank of its first true match (-1 where the query has no valid match). Under DDP all
        ranks extract features together; rank 0 computes the metrics, the other ranks return None.
        """
        was_training = model.training
        model.eval()
        try:
            feats = self.features(model)
        finally:
            model.train(was_training)
        self.last_features = feats
        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return None
        warn_if_collapsed(feats)
        per_draw: list[dict[str, float]] = []
        tables: list[str] = []
        for d, (query, gallery) in enumerate(self.draws):
            where = self.where(d)
            qi = torch.tensor([self.index[s] for s in query])
            gi = torch.tensor([self.index[s] for s in gallery])
            labels = (np.array([s.pid for s in query]), np.array([s.pid for s in gallery]),
                      np.array([s.camid for s in query]), np.array([s.camid for s in gallery]))
            qf, gf = feats[qi].to(self.device), feats[gi].to(self.device)
            self.check_features(qf, query, "query", where)
            self.check_features(gf, gallery, "gallery", where)
            if len(query) * len(gallery) <= DENSE_LIMIT:
                result = evaluate_rank(self.distances(qf, gf, where), *labels, max_rank=int(self.cfg.test.max_rank),
                                       protocol=self.protocol, where=where, stage=self.stage())
            else:
                result = self.evaluate_chunked(qf, gf, labels, where)
            per_draw.append(result.summary(REPORTED_RANKS))
            if per_query:
                tables.append(per_query_table(query, result))
        metrics = {k: float(np.mean([r[k] for r in per_draw])) for k in per_draw[0]}
        if len(per_draw) > 1:
            metrics.update({f"{k}_std": float(np.std([r[k] for r in per_draw])) for k in per_draw[0]})
            metrics["draws"] = len(per_draw)
        return (metrics, tables) if per_query else metrics


def check_draws(dataset: ReidDataset) -> None:
    """Raise a :class:`DatasetError` when a query/gallery draw of ``dataset`` cannot be evaluated:
    an empty query or gallery, or no query with a true match in the gallery (same identity, and for
    ``cross_camera`` protocols another camera), which the metrics need. Cheap: sets of ids."""
    draws = dataset.draws or [(dataset.query, dataset.gallery)]
    for d, (query, gallery) in enumerate(draws):
        where = f"data set '{dataset.name}'" + (f", draw {d}" if len(draws) > 1 else "")
        if not query or not gallery:
            raise DatasetError(f"{where}: {'the query' if not query else 'the gallery'} is empty; nothing to evaluate")
        cams: dict[int, set[int]] = {}
        for s in gallery:
            cams.setdefault(s.pid, set()).add(s.camid)
        cross_camera = dataset.evaluation_protocol.cross_camera
        if not any(s.pid in cams and (not cross_camera or cams[s.pid] - {s.camid}) for s in query):
            rule = "identity from another camera" if cross_camera else "identity"
            raise DatasetError(
                f"{where}: no query of {len(query)} has a gallery image of its {rule} "
                f"({len({s.pid for s in query})} query identities, {len(cams)} gallery identities); "
                "the rank metrics need at least one"
            )


#: relative spread below which test features are treated as one point (healthy models: ~0.1-1)
COLLAPSE_LIMIT = 1e-3


def feature_spread(feats: torch.Tensor) -> float:
    """How far apart features [N, D] are: the norm of the per-dimension std over the mean feature
    norm (0 when every image gets the same feature)."""
    f = feats.double()
    return float(f.std(0).norm() / f.norm(dim=1).mean().clamp_min(1e-12))


def warn_if_collapsed(feats: torch.Tensor) -> bool:
    """Log a warning when the test features of all images are (nearly) the same point: the ranking
    is then decided by rounding and ties, and the metrics mean nothing. Returns whether it warned
    (not for non-finite features: they are an error of their own)."""
    spread = feature_spread(feats)
    if not spread < COLLAPSE_LIMIT:
        return False
    log.warning(f"test features are nearly identical across images (relative spread {spread:.1e}): rank-1 and "
                "mAP are decided by rounding and ties and mean nothing. The usual causes: a model trained for "
                "only a few steps (BatchNorm running statistics still at their initial values) or a diverged run.")
    return True


def per_query_table(query: list[Sample], result: Any) -> str:
    """CSV text: ``path,pid,camid,ap,first_match_rank`` per query (ap empty when skipped)."""
    valid = np.asarray(result.valid, dtype=bool)
    ranks = np.asarray(result.first_match_rank)
    ap = np.full(len(query), np.nan)
    ap[valid] = np.asarray(result.ap)
    lines = ["path,pid,camid,ap,first_match_rank"]
    for s, a, r in zip(query, ap, ranks):
        lines.append(f"{s.path},{s.pid},{s.camid},{'' if np.isnan(a) else f'{a:.6f}'},{int(r)}")
    return "\n".join(lines) + "\n"


def format_metrics(metrics: dict[str, float], title: str = "") -> str:
    """``rank-1 62.5% | rank-5 ... | mAP 41.2% | mINP 12.0%`` (with ± std over draws)."""
    parts = []
    for key, label in [("rank1", "rank-1"), ("rank5", "rank-5"), ("rank10", "rank-10"),
                       ("mAP", "mAP"), ("mINP", "mINP")]:
        if key in metrics:
            text = f"{label} {100 * metrics[key]:.1f}%"
            if f"{key}_std" in metrics:
                text += f" ± {100 * metrics[f'{key}_std']:.1f}"
            parts.append(text)
    return (f"{title}: " if title else "") + " | ".join(parts)
