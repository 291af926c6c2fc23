"""The context shown with an example: tokens around its max, clipped to its sequence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saeflow.analysis.entries import Entries
from saeflow.analysis.groups import is_sorted


@dataclass(frozen=True)
class Windows:
    """Window j holds token[offsets[j]:offsets[j+1]] (global token indices, in order)."""

    pos: np.ndarray  # int64, position of the example's max within its sequence
    offsets: np.ndarray  # int64 [n_examples + 1]
    token: np.ndarray  # int64


def context_windows(token: np.ndarray, token_seq: np.ndarray, context: int) -> Windows:
    """Tokens token-context .. token+context of each example, clipped to the example's sequence.

    token_seq[t] is the seq of token t, over the whole corpus; it is sorted (tokens are ordered
    by (seq, pos)).
    """
    token = np.asarray(token, dtype=np.int64)
    token_seq = np.asarray(token_seq)
    seq = token_seq[token]
    start = np.searchsorted(token_seq, seq, side="left")
    end = np.searchsorted(token_seq, seq, side="right")
    first = np.maximum(token - context, start)
    lengths = np.minimum(token + context + 1, end) - first
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    flat = np.repeat(first - offsets[:-1], lengths) + np.arange(offsets[-1])
    return Windows(pos=token - start, offsets=offsets, token=flat)


def activations_at(entries: Entries, feature: np.ndarray, token: np.ndarray) -> np.ndarray:
    """float32 activation of feature[i] on token[i]; 0 where the entries have none.

    Tokens or features the entries do not cover (another shard, outside the corpus) also read 0.
    """
    # One sorted (feature, token) key per entry, then a binary search per query. A shard's
    # entries come in that order already; entries in any other order are sorted first.
    bound = int(entries.token.max()) + 1 if entries.token.size else 0
    keys = entries.local * bound + entries.token
    value = entries.value
    if not is_sorted(keys):
        order = np.argsort(keys)
        keys, value = keys[order], value[order]
    local = np.asarray(feature, dtype=np.int64) - entries.first_feature
    token = np.asarray(token, dtype=np.int64)
    covered = (local >= 0) & (local < entries.n_features) & (token >= 0) & (token < bound)
    if keys.size == 0:
        return np.zeros(local.shape, dtype=np.float32)
    query = local * bound + token
    at = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return np.where(covered & (keys[at] == query), value[at], 0).astype(np.float32)
