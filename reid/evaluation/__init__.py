"""Evaluation: feature extraction, distances, ranking metrics, re-ranking, query expansion.

Ranking uses compiled numba kernels when numba is installed (``pip install 'reid[fast]'``) and
vectorised torch code otherwise (also on CUDA); both give identical results. Equal distances
rank in gallery order; NaN or infinite features and distances are a :class:`NonFiniteError`.
"""
from reid.data.protocols import PROTOCOLS, Protocol, get_protocol
from reid.evaluation._kernels import HAVE_NUMBA
from reid.evaluation.distance import PreparedGallery, compute_distance
from reid.evaluation.features import extract_features
from reid.evaluation.finite import NonFiniteError
from reid.evaluation.rank import RankResult, evaluate_features, evaluate_rank
from reid.evaluation.rerank import FeatureReranker, aqe, re_rank, re_rank_features

__all__ = [
    "HAVE_NUMBA", "PROTOCOLS", "FeatureReranker", "NonFiniteError", "PreparedGallery", "Protocol", "RankResult", "aqe",
    "compute_distance", "evaluate_features", "evaluate_rank", "extract_features", "get_protocol", "re_rank",
    "re_rank_features",
]
