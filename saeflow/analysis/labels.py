"""Feature labels: the tokens with the highest TF-IDF over a feature's top-example contexts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saeflow.analysis.groups import rank_in_runs, run_starts
from saeflow.errors import SaeflowError


@dataclass(frozen=True)
class LabelTokens:
    """Rows in (feature, rank) order; rank 0 is the feature's highest TF-IDF token."""

    feature: np.ndarray  # int64
    rank: np.ndarray  # int64
    token_id: np.ndarray  # int64
    score: np.ndarray  # float64: (count in contexts / context tokens) * idf


def label_tokens(
    feature: np.ndarray, token_id: np.ndarray, idf_token_id: np.ndarray, idf: np.ndarray, n: int = 3
) -> LabelTokens:
    """Top n distinct tokens per feature by TF-IDF (ties: smaller token id).

    feature/token_id: one row per context token of the feature's top examples, all windows
    concatenated; idf_token_id/idf: corpus/idf.parquet's columns.
    """
    feature = np.asarray(feature, dtype=np.int64)
    token_id = np.asarray(token_id, dtype=np.int64)
    order = np.argsort(idf_token_id)
    known, known_idf = np.asarray(idf_token_id, dtype=np.int64)[order], np.asarray(idf, dtype=np.float64)[order]

    by_pair = np.lexsort((token_id, feature))
    pair_feature, pair_token = feature[by_pair], token_id[by_pair]
    starts = np.flatnonzero(run_starts(pair_feature, pair_token))
    count = np.diff(np.append(starts, by_pair.size))
    pair_feature, pair_token = pair_feature[starts], pair_token[starts]

    if not np.isin(pair_token, known).all():
        raise SaeflowError("a context token id is missing from corpus/idf.parquet")
    at = np.searchsorted(known, pair_token)
    features, context_size = np.unique(feature, return_counts=True)
    score = count / context_size[np.searchsorted(features, pair_feature)] * known_idf[at]

    ranked = np.lexsort((pair_token, -score, pair_feature))
    rank = rank_in_runs(run_starts(pair_feature[ranked]))
    keep = ranked[rank < n]
    return LabelTokens(pair_feature[keep], rank[rank < n], pair_token[keep], score[keep])
