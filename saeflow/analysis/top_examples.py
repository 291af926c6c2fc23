"""Each feature's strongest sequences, from per-(feature, sequence) maxima.

A sequence's activation is the feature's max over it, at the first token reaching it. Sequences
rank by (activation desc, seq asc).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saeflow.analysis.entries import Entries
from saeflow.analysis.groups import is_sorted, packed_key, rank_in_runs, run_maxima, run_starts


@dataclass(frozen=True)
class SeqMax:
    """One row per (feature, seq) where the feature fires, sorted by (feature, seq)."""

    feature: np.ndarray  # int64
    seq: np.ndarray  # int64
    activation: np.ndarray  # float32, the feature's max over the sequence
    token: np.ndarray  # int64, global token index of the first token reaching it


@dataclass(frozen=True)
class TopExamples:
    """Rows in (feature, rank) order; rank 0 is the strongest sequence."""

    feature: np.ndarray
    rank: np.ndarray
    activation: np.ndarray
    seq: np.ndarray
    token: np.ndarray


def sequence_maxima(entries: Entries, token_seq: np.ndarray) -> SeqMax:
    """Per-(feature, seq) maxima; token_seq[t] is the seq of token t."""
    seq = np.asarray(token_seq)[entries.token].astype(np.int64)
    return _reduce(entries.feature, seq, entries.value, entries.token)


def top_sequences(maxima: SeqMax, top_k: int) -> TopExamples:
    """The top_k sequences of each feature by (activation desc, seq asc)."""
    order = _by_feature_then_activation(maxima)
    rank = rank_in_runs(run_starts(maxima.feature[order]))
    kept = rank < top_k
    keep = order[kept]
    return TopExamples(maxima.feature[keep], rank[kept], maxima.activation[keep], maxima.seq[keep], maxima.token[keep])


def _by_feature_then_activation(maxima: SeqMax) -> np.ndarray:
    """The order (feature, activation desc, seq)."""
    key = packed_key(maxima.feature, maxima.activation, descending=True)
    if key is None or not is_sorted(maxima.feature, maxima.seq):
        return np.lexsort((maxima.seq, -maxima.activation, maxima.feature))
    # Input in (feature, seq) order: a stable sort keeps seq ascending among ties.
    return np.argsort(key, kind="stable")


def _reduce(feature: np.ndarray, seq: np.ndarray, activation: np.ndarray, token: np.ndarray) -> SeqMax:
    """Keep each (feature, seq)'s largest activation, the smallest token among ties."""
    if feature.size and is_sorted(feature, seq):
        # Already grouped (a feature shard's entries are in (feature, token) order): reduce each run.
        starts = np.flatnonzero(run_starts(feature, seq))
        best, first_token = run_maxima(starts, activation, token)
        return SeqMax(feature[starts], seq[starts], best, first_token)
    order = np.lexsort((token, -activation, seq, feature))
    keep = order[run_starts(feature[order], seq[order])]
    return SeqMax(feature[keep], seq[keep], activation[keep], token[keep])
