"""Per-feature histograms of nonzero values; chunk counts merge by addition.

Edges are fixed before counting (from the feature's min and max in feature_stats), so every
chunk bins against the same edges. Linear edges run from 0 to the max; log edges from the
min to the max, so that every nonzero value falls inside and sum(counts) == n_active either way.
A feature that never fires gets all-zero edges and counts.
"""

from __future__ import annotations

import numpy as np

from saeflow.analysis.binning import bin_index, linear_edges, log_edges
from saeflow.analysis.entries import Entries
from saeflow.errors import SaeflowError


def histogram_edges(min_: np.ndarray, max_: np.ndarray, bins: int, scale: str) -> np.ndarray:
    """[n_features, bins + 1] float64 edges from feature_stats' min and max (NaN for a dead feature)."""
    if bins < 1:
        raise SaeflowError(f"analysis.bins must be at least 1, got {bins}")
    fired = ~np.isnan(max_)
    stop = np.where(fired, max_, 0.0)
    if scale == "linear":
        return linear_edges(stop, bins)
    if scale == "log":
        start = np.where(fired, min_, 0.0)
        if (start[fired] <= 0).any():
            raise SaeflowError("analysis.histogram_scale 'log' needs positive activations; a feature has min <= 0")
        edges = np.zeros((stop.size, bins + 1))
        edges[fired] = log_edges(start[fired], stop[fired], bins)
        return edges
    raise SaeflowError(f"analysis.histogram_scale must be 'linear' or 'log', got {scale!r}")


def histogram_counts(entries: Entries, edges: np.ndarray) -> np.ndarray:
    """[n_features, bins] int64 counts of the entries' values; values outside the edges are not counted."""
    if edges.shape[0] != entries.n_features:
        raise SaeflowError(f"histogram edges have {edges.shape[0]} rows for {entries.n_features} features")
    bins = edges.shape[1] - 1
    local = entries.local
    bin_ = bin_index(edges, local, entries.value)
    inside = bin_ >= 0
    flat = np.bincount(local[inside] * bins + bin_[inside], minlength=entries.n_features * bins)
    return flat.reshape(entries.n_features, bins)
