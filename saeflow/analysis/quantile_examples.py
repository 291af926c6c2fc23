"""Examples across each feature's range: seeded samples from equal-width activation bands.

Band b of a feature is [b, b+1) * max / bands over its sequence maxima (the last band closed),
assigned against the actual edges like np.histogram. The sample is reproducible without a
random generator's state: each (feature, seq) gets the key

    key = mix(mix(mix(seed) ^ feature) ^ seq)    (uint64, wrapping arithmetic)

where mix is SplitMix64's output function (z += 0x9E3779B97F4A7C15;
z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9; z = (z ^ z >> 27) * 0x94D049BB133111EB; z ^ z >> 31),
and a band keeps its min(per_band, available) sequences with the smallest keys (ties: smaller
seq). Ordering by independent uniform keys is a uniform random permutation, so this is uniform
sampling without replacement; and a feature's sample depends only on (seed, feature, its
sequences), never on sharding or chunk order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saeflow.analysis.binning import bin_index, linear_edges
from saeflow.analysis.groups import is_sorted, rank_in_runs, run_starts
from saeflow.analysis.top_examples import SeqMax
from saeflow.errors import SaeflowError


@dataclass(frozen=True)
class BandExamples:
    """Rows in (feature, band, rank) order; rank 0 is the band's strongest sampled sequence."""

    feature: np.ndarray
    band: np.ndarray
    rank: np.ndarray
    activation: np.ndarray
    seq: np.ndarray
    token: np.ndarray


def sample_bands(maxima: SeqMax, bands: int, per_band: int, seed: int) -> BandExamples:
    """Sample each feature's bands; maxima must hold every sequence of each feature it covers."""
    if bands < 1 or per_band < 0 or seed < 0:
        raise SaeflowError(
            f"need quantile_bands >= 1, per_band >= 0 and seed >= 0; got {bands}, {per_band}, {seed}"
        )
    # SeqMax comes sorted by (feature, seq): features are then runs, and a stable sort keeps
    # seq order among ties by itself. Other input takes the general path.
    grouped = maxima.feature.size > 0 and is_sorted(maxima.feature, maxima.seq)
    if grouped:
        starts = run_starts(maxima.feature)
        group = np.cumsum(starts) - 1
        feature_max = np.maximum.reduceat(maxima.activation, np.flatnonzero(starts)).astype(np.float32)
    else:
        features, group = np.unique(maxima.feature, return_inverse=True)
        feature_max = np.full(features.size, -np.inf, dtype=np.float32)
        np.maximum.at(feature_max, group, maxima.activation)
    band = bin_index(linear_edges(feature_max, bands), group, maxima.activation)

    key = sample_key(seed, maxima.feature, maxima.seq)
    if grouped:
        order = _sampling_order(key, group * (bands + 1) + band + 1, per_band)  # band >= -1
    else:
        order = np.lexsort((maxima.seq, key, band, maxima.feature))
    drawn = order[rank_in_runs(run_starts(maxima.feature[order], band[order])) < per_band]

    order = drawn[np.lexsort((maxima.seq[drawn], -maxima.activation[drawn], band[drawn], maxima.feature[drawn]))]
    return BandExamples(
        feature=maxima.feature[order],
        band=band[order],
        rank=rank_in_runs(run_starts(maxima.feature[order], band[order])),
        activation=maxima.activation[order],
        seq=maxima.seq[order],
        token=maxima.token[order],
    )


def _sampling_order(key: np.ndarray, cell: np.ndarray, per_band: int) -> np.ndarray:
    """Indices in (cell, key) order, input order among ties, of enough elements to hold each
    cell's per_band smallest keys: every element left out has a larger key than all kept ones."""
    size = np.bincount(cell)
    # A cell's per_band smallest of m uniform keys lie below about per_band / m of the key range;
    # keeping those under 4x that keeps the sort small. A cell with too few under it keeps all.
    limit = np.minimum(1.0, 4.0 * per_band / np.maximum(size, 1)) * 2.0**64
    below = key.astype(np.float64) < limit[cell]  # monotonic in key, so exact as a cut
    short = np.bincount(cell, weights=below, minlength=size.size) < np.minimum(size, per_band)
    kept = np.flatnonzero(below | short[cell])
    return kept[np.lexsort((key[kept], cell[kept]))]


def sample_key(seed: int, feature: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """The uint64 sampling key of each (feature, seq) under seed (see the module docstring)."""
    seed_key = _mix(np.full(np.shape(feature), seed, dtype=np.uint64))
    return _mix(_mix(seed_key ^ np.asarray(feature).astype(np.uint64)) ^ np.asarray(seq).astype(np.uint64))


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on an array (uint64 arithmetic wraps, as it should here)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))
