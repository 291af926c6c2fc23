"""Per-feature summary statistics, as chunk partials merged with Chan's parallel update.

count, min and max merge exactly; mean and M2 (sum of squared deviations) are kept per chunk
with a two-pass mean and combined with Chan et al.'s formula, which stays accurate where a
running sum of squares would cancel, and agrees across chunk splits to float64 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saeflow.analysis.entries import Entries
from saeflow.errors import SaeflowError


@dataclass(frozen=True)
class StatsPartial:
    """Moments of each feature's nonzero values over some tokens (per-feature arrays)."""

    first_feature: int
    n_tokens: int
    count: np.ndarray  # int64
    mean: np.ndarray  # float64, 0 where count is 0
    m2: np.ndarray  # float64
    min: np.ndarray  # float32, +inf where count is 0
    max: np.ndarray  # float32, -inf where count is 0


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


def partial_stats(entries: Entries, n_tokens: int) -> StatsPartial:
    """Partial over the tokens the entries come from (n_tokens of them, active or not)."""
    local, value = entries.local, entries.value
    size = entries.n_features
    count = np.bincount(local, minlength=size)
    total = np.bincount(local, weights=value, minlength=size)
    mean = np.divide(total, count, out=np.zeros(size), where=count > 0)
    m2 = np.bincount(local, weights=(value - mean[local]) ** 2, minlength=size)
    low = np.full(size, np.inf, dtype=np.float32)
    high = np.full(size, -np.inf, dtype=np.float32)
    np.minimum.at(low, local, value)
    np.maximum.at(high, local, value)
    return StatsPartial(entries.first_feature, n_tokens, count, mean, m2, low, high)


def merge_stats(a: StatsPartial, b: StatsPartial) -> StatsPartial:
    """Partial over the tokens of both (disjoint token sets, same features); associative."""
    if a.first_feature != b.first_feature or a.count.shape != b.count.shape:
        raise SaeflowError("stats partials cover different features and cannot be merged")
    count = a.count + b.count
    share_b = np.divide(b.count, count, out=np.zeros(count.shape), where=count > 0)
    delta = b.mean - a.mean
    return StatsPartial(
        first_feature=a.first_feature,
        n_tokens=a.n_tokens + b.n_tokens,
        count=count,
        mean=a.mean + delta * share_b,
        m2=a.m2 + b.m2 + delta**2 * a.count * share_b,
        min=np.minimum(a.min, b.min),
        max=np.maximum(a.max, b.max),
    )


def finalize_stats(partial: StatsPartial) -> FeatureStats:
    """The feature_stats columns; density is over all partial.n_tokens tokens."""
    if partial.n_tokens <= 0:
        raise SaeflowError("feature statistics need at least one token")
    fired = partial.count > 0
    count = partial.count
    return FeatureStats(
        feature=partial.first_feature + np.arange(count.size, dtype=np.int64),
        n_active=count,
        density=count / partial.n_tokens,
        min=np.where(fired, partial.min, np.nan).astype(np.float32),
        max=np.where(fired, partial.max, np.nan).astype(np.float32),
        mean=np.where(fired, partial.mean, np.nan),
        std=np.sqrt(np.divide(partial.m2, count, out=np.full(count.shape, np.nan), where=fired)),
        sum=partial.mean * count,
    )
