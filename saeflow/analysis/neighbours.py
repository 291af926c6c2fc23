"""Nearest other features: by decoder cosine, and by Jaccard index of active-token sets.

Both work on a block of features at a time ([block, n_features] scores); ties go to the
smaller feature id.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from saeflow.analysis.topk import top_k_per_row
from saeflow.errors import SaeflowError


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


def cooccurrence_counts(
    indices: np.ndarray, values: np.ndarray, block_start: int, block_stop: int, n_features: int
) -> np.ndarray:
    """[block_stop - block_start, n_features] int64 count of a chunk's tokens active on both features.

    Sum over chunks for the whole corpus; the diagonal counts each feature's active tokens.
    """
    counts_BF = np.zeros((block_stop - block_start, n_features), dtype=np.int64)
    add_cooccurrences(counts_BF, indices, values, block_start)
    return counts_BF


def add_cooccurrences(counts_BF: np.ndarray, indices: np.ndarray, values: np.ndarray, block_start: int) -> None:
    """Add a chunk's co-occurrence counts of features block_start.. to counts_BF (C-contiguous) in place.

    One scatter-add of the chunk's pairs (np.add.at) costs far less than a bincount, which
    allocates and then adds a whole [block, n_features] matrix per chunk.
    """
    n_block, n_features = counts_BF.shape
    indices = np.asarray(indices)
    active = np.where((indices >= 0) & (np.asarray(values) != 0), indices, -1).astype(np.int64)
    if active.size and active.max() >= n_features:
        raise SaeflowError(f"sparse chunk has feature id {active.max()} but n_features is {n_features}")
    row, col = np.nonzero((active >= block_start) & (active < block_start + n_block))
    partners = active[row]  # [m, k]: the other features active on each in-block entry's token
    keys = (active[row, col] - block_start)[:, None] * n_features + partners
    assert counts_BF.flags.c_contiguous  # so that reshape(-1) is a view of it
    np.add.at(counts_BF.reshape(-1), keys[partners >= 0], 1)


def coactivation_neighbours(counts_BF: np.ndarray, block_start: int, n_active: np.ndarray, n: int) -> Neighbours:
    """The n features with the largest Jaccard index to each block feature, among those sharing a token.

    counts_BF: cooccurrence_counts summed over all chunks; n_active: every feature's active tokens.
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
