"""Nearest other features: by decoder cosine, and by Jaccard index of active-token sets.

Both work on a block of features at a time ([block, n_features] scores); ties go to the
smaller feature id.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from saeflow.analysis.topk import top_k_per_row


@dataclass(frozen=True)
class Neighbours:
    """Rows in (feature, rank) order; rank 0 is the nearest."""

    feature: np.ndarray  # int64
    rank: np.ndarray  # int64
    other: np.ndarray  # int64
    score: np.ndarray  # float64 (Jaccard) or W_dec's float dtype (cosine)


def cosine_neighbours(W_dec_FD: np.ndarray, n: int, block_size: int = 1024, rows: range | None = None) -> Neighbours:
    """The n features whose decoder rows have the largest cosine with each row (a zero row has cosine 0).

    `rows`: the features to list neighbours for (default all), e.g. one feature shard.
    """
    W_dec_FD = np.asarray(W_dec_FD)
    norm = np.sqrt(np.einsum("fd,fd->f", W_dec_FD, W_dec_FD))
    rows = range(W_dec_FD.shape[0]) if rows is None else rows
    parts = []
    for start in range(rows.start, rows.stop, block_size):
        stop = min(start + block_size, rows.stop)
        dots_BF = W_dec_FD[start:stop] @ W_dec_FD.T
        denominator = norm[start:stop, None] * norm[None, :]
        cosine_BF = np.divide(dots_BF, denominator, out=np.zeros_like(dots_BF), where=denominator > 0)
        parts.append(_nearest(cosine_BF, start, n))
    return Neighbours(*(np.concatenate([getattr(p, field.name) for p in parts]) for field in fields(Neighbours)))


def coactivation_neighbours(counts_BF: np.ndarray, block_start: int, n_active: np.ndarray, n: int) -> Neighbours:
    """The n features with the largest Jaccard index to each block feature, among those sharing a token.

    counts_BF: co-occurrence counts of the block over all tokens (decoder_tables.add_chunk_cooccurrences
    summed over chunks); n_active: every feature's active tokens.
    """
    n_active = np.asarray(n_active, dtype=np.int64)
    rows = np.arange(counts_BF.shape[0])
    # A dense float64 Jaccard block, built in place: integer sums are exact in float64, so this is
    # the same division as shared / (|a| + |b| - shared) on int64.
    jaccard_BF = np.empty(counts_BF.shape, dtype=np.float64)
    np.add(n_active[block_start + rows, None], n_active[None, :], out=jaccard_BF)
    jaccard_BF -= counts_BF
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 where neither fires; masked next
        np.divide(counts_BF, jaccard_BF, out=jaccard_BF)
    # Only pairs sharing a token are candidates, never the feature itself: -inf is never chosen.
    jaccard_BF[counts_BF == 0] = -np.inf
    return _nearest(jaccard_BF, block_start, n)


def _nearest(scores_BF: np.ndarray, start: int, n: int) -> Neighbours:
    """Top n per row excluding the row's own feature (start + row)."""
    rows = np.arange(scores_BF.shape[0])
    scores_BF[rows, start + rows] = -np.inf
    row, other, score, rank = top_k_per_row(scores_BF, n)
    return Neighbours(feature=start + row, rank=rank, other=other, score=score)
