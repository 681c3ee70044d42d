"""Evaluation: feature extraction, distances, ranking metrics, re-ranking, query expansion.

Ranking uses compiled numba kernels when numba is installed (``pip install 'reid[fast]'``) and
vectorised torch code otherwise (also on CUDA); both give identical results.
"""
from reid.evaluation._kernels import HAVE_NUMBA
from reid.evaluation.distance import PreparedGallery, compute_distance
from reid.evaluation.features import extract_features
from reid.evaluation.per_query import load_per_query, per_query_records, save_per_query
from reid.evaluation.rank import PROTOCOLS, RankResult, evaluate_features, evaluate_rank
from reid.evaluation.rerank import FeatureReranker, aqe, re_rank, re_rank_features

__all__ = [
    "HAVE_NUMBA", "PROTOCOLS", "FeatureReranker", "PreparedGallery", "RankResult", "aqe", "compute_distance",
    "evaluate_features", "evaluate_rank", "extract_features", "load_per_query", "per_query_records", "re_rank",
    "re_rank_features", "save_per_query",
]
