"""Per-feature summary statistics of a shard's entries.

The standard deviation takes a two-pass mean (sum of squared deviations from the mean), which
stays accurate where a running sum of squares would cancel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saeflow.analysis.entries import Entries
from saeflow.errors import SaeflowError


@dataclass(frozen=True)
class FeatureStats:
    """The feature_stats table as arrays; NaN means null and occurs exactly where n_active is 0."""

    feature: np.ndarray  # int64
    n_active: np.ndarray  # int64
    density: np.ndarray  # float64
    min: np.ndarray  # float32
    max: np.ndarray  # float32
    mean: np.ndarray  # float64
    std: np.ndarray  # float64, population
    sum: np.ndarray  # float64, 0 for a feature that never fires


def feature_stats(entries: Entries, n_tokens: int) -> FeatureStats:
    """The feature_stats columns of the entries' features; density is over all n_tokens tokens."""
    if n_tokens <= 0:
        raise SaeflowError("feature statistics need at least one token")
    local, value = entries.local, entries.value
    size = entries.n_features
    count = np.bincount(local, minlength=size)
    fired = count > 0
    total = np.bincount(local, weights=value, minlength=size)
    mean = np.divide(total, count, out=np.zeros(size), where=fired)
    m2 = np.bincount(local, weights=(value - mean[local]) ** 2, minlength=size)
    low = np.full(size, np.inf, dtype=np.float32)
    high = np.full(size, -np.inf, dtype=np.float32)
    np.minimum.at(low, local, value)
    np.maximum.at(high, local, value)
    return FeatureStats(
        feature=entries.first_feature + np.arange(size, dtype=np.int64),
        n_active=count,
        density=count / n_tokens,
        min=np.where(fired, low, np.nan).astype(np.float32),
        max=np.where(fired, high, np.nan).astype(np.float32),
        mean=np.where(fired, mean, np.nan),
        std=np.sqrt(np.divide(m2, count, out=np.full(size, np.nan), where=fired)),
        sum=total,
    )
