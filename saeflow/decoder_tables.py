"""Per-feature tables that come from the SAE's weights and the sparse store, one feature shard
at a time: influences (W_dec @ W_U), decoder-cosine and co-activation neighbours."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from saeflow.analysis.influence import influences
from saeflow.analysis.neighbours import Neighbours, add_cooccurrences, coactivation_neighbours, cosine_neighbours
from saeflow.storage import read_sparse_chunk

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


def coactivation_table(chunk_paths: list, features: range, n_features: int, n_active: np.ndarray, n: int) -> pa.Table:
    """Jaccard neighbours of the shard's features, from co-occurrence counts streamed over chunks.

    Features go in blocks small enough for a [block, n_features] count matrix (and its float64
    Jaccard twin); each block is one pass over the sparse chunks.
    """
    block = max(1, _COACTIVATION_BLOCK_BYTES // (8 * n_features))
    parts = []
    for start in range(features.start, features.stop, block):
        stop = min(start + block, features.stop)
        counts = np.zeros((stop - start, n_features), dtype=np.int64)
        for path in chunk_paths:
            indices, values, _ = read_sparse_chunk(path)
            add_cooccurrences(counts, indices, values, start)
        parts.append(_neighbour_table(coactivation_neighbours(counts, start, n_active, n), "coactivation"))
    return pa.concat_tables(parts)
