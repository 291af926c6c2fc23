"""Exact per-feature percentiles of nonzero values, all features of a shard at once.

Reproduces np.percentile(values, q) with a list q (numpy's default "linear" method) bit for
bit: values are sorted within each feature by one sort, and the interpolation repeats
numpy's arithmetic (the difference of the two neighbours in the values' float32, the
weighted step in float64, from the upper neighbour when the weight is >= 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from saeflow.analysis.entries import Entries
from saeflow.analysis.groups import packed_key
from saeflow.errors import SaeflowError


def percentiles(entries: Entries, q: Sequence[float]) -> np.ndarray:
    """[n_features, len(q)] float64 percentiles of each feature's values; NaN where it has none."""
    quantile = np.true_divide(np.asarray(q, dtype=np.float64), 100)
    if quantile.ndim != 1 or ((quantile < 0) | (quantile > 1)).any():
        raise SaeflowError(f"percentiles must be a list of numbers in [0, 100], got {q}")
    local = entries.local
    count = np.bincount(local, minlength=entries.n_features)
    result = np.full((entries.n_features, quantile.size), np.nan)
    if local.size == 0:
        return result
    ordered = _sorted_within_features(local, entries.value)
    start = np.cumsum(count) - count

    virtual = (count[:, None] - 1) * quantile[None, :]
    below = np.floor(virtual)
    at_last = virtual >= count[:, None] - 1  # numpy takes the last value here
    gamma = virtual - below
    lower = start[:, None] + np.where(at_last, count[:, None] - 1, below).astype(np.int64)
    upper = lower + ~at_last
    fired = count > 0
    a = ordered[lower[fired]]
    b = ordered[upper[fired]]
    gamma = gamma[fired]
    diff = b - a
    result[fired] = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    return result


def _sorted_within_features(local: np.ndarray, value: np.ndarray) -> np.ndarray:
    """The values ordered by (feature, value)."""
    key = packed_key(local, value)
    if key is None:
        return value[np.lexsort((value, local))]
    return (np.sort(key) & 0xFFFFFFFF).astype(np.uint32).view(np.float32)
