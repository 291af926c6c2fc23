"""Per-feature tables that come from the SAE's weights and the sparse store, one feature shard
at a time: influences (W_dec @ W_U), decoder-cosine and co-activation neighbours."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from saeflow.analysis.influence import influences
from saeflow.analysis.neighbours import Neighbours, coactivation_neighbours, cosine_neighbours
from saeflow.storage import SparseChunk, read_sparse_chunk

# Co-occurrence counts are a [block, n_features] int64 matrix per block of features.
_COACTIVATION_BLOCK_BYTES = 1 << 28


def influence_table(W_dec_FD: np.ndarray, W_U_DV: np.ndarray, features: range, k: int, token_strings) -> pa.Table:
    """The k largest (+) and smallest (−) entries of W_dec @ W_U for each feature of the shard."""
    found = influences(W_dec_FD[features.start : features.stop], W_U_DV, min(k, W_U_DV.shape[1]))
    return pa.table({
        "feature": pa.array(found.feature + features.start, pa.int64()),
        "sign": pa.array(found.sign.astype(object), pa.string()),
        "rank": pa.array(found.rank, pa.int32()),
        "token_id": pa.array(found.token_id, pa.int64()),
        "token": pa.array(token_strings(found.token_id), pa.string()),
        "score": pa.array(found.score, pa.float32()),
    })


def _neighbour_table(found: Neighbours, kind: str) -> pa.Table:
    return pa.table({
        "feature": pa.array(found.feature, pa.int64()),
        "kind": pa.array([kind] * len(found.feature), pa.string()),
        "rank": pa.array(found.rank, pa.int32()),
        "other": pa.array(found.other, pa.int64()),
        "score": pa.array(found.score, pa.float64()),
    })


def cosine_table(W_dec_FD: np.ndarray, features: range, n: int) -> pa.Table:
    return _neighbour_table(cosine_neighbours(W_dec_FD, min(n, len(W_dec_FD) - 1), rows=features), "cosine")


def add_chunk_cooccurrences(counts_BF: np.ndarray, chunk: SparseChunk, block_start: int) -> None:
    """Add a CSR chunk's co-occurrence counts of features block_start.. to counts_BF (C-contiguous)
    in place: one count per pair of entries on the same token, an entry with itself included
    (the diagonal: each feature's active tokens).

    Pairs are listed from each in-block entry to every entry of its token, so the work is the
    sum of those tokens' L0, whatever the widest token; one scatter-add (np.add.at) of them
    costs far less than a bincount, which allocates a whole [block, n_features] matrix per chunk.
    """
    n_block, n_features = counts_BF.shape
    entries = np.flatnonzero((chunk.indices >= block_start) & (chunk.indices < block_start + n_block))
    row = chunk.entry_rows()[entries]
    width = np.diff(chunk.indptr)[row]  # pairs of each in-block entry
    # Pair j of an entry whose pairs start at p in the pair list has its partner at indptr[row] + j - p.
    pair_start = np.cumsum(width) - width
    partner = chunk.indices[np.arange(width.sum()) + np.repeat(chunk.indptr[row] - pair_start, width)]
    owner_row = (chunk.indices[entries].astype(np.int64) - block_start) * n_features
    keys = np.repeat(owner_row, width) + partner
    assert counts_BF.flags.c_contiguous  # so that reshape(-1) is a view of it
    np.add.at(counts_BF.reshape(-1), keys, 1)


def coactivation_table(chunk_paths: list, features: range, n_features: int, n_active: np.ndarray, n: int) -> pa.Table:
    """Jaccard neighbours of the shard's features, from co-occurrence counts streamed over chunks.

    Features go in blocks small enough for a [block, n_features] count matrix (and its float64
    Jaccard twin); each block is one pass over the CSR chunks.
    """
    block = max(1, _COACTIVATION_BLOCK_BYTES // (8 * n_features))
    parts = []
    for start in range(features.start, features.stop, block):
        stop = min(start + block, features.stop)
        counts = np.zeros((stop - start, n_features), dtype=np.int64)
        for path in chunk_paths:
            add_chunk_cooccurrences(counts, read_sparse_chunk(path, n_features), start)
        parts.append(_neighbour_table(coactivation_neighbours(counts, start, n_active, n), "coactivation"))
    return pa.concat_tables(parts)
