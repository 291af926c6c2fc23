"""Per-feature bin edges and exact bin lookup with np.histogram's convention.

Bins are assigned by comparing against the actual edge values (a vectorised binary search),
never by dividing by a bin width, so a value lying exactly on an edge lands where
np.histogram(values, edges) puts it: bins half-open [e_i, e_i+1), the last one closed.
"""

from __future__ import annotations

import numpy as np


def linear_edges(stop: np.ndarray, bins: int) -> np.ndarray:
    """[n, bins + 1] float64 edges from 0 to each stop, row i equal to np.linspace(0.0, stop[i], bins + 1)."""
    # Not np.linspace on the whole array: one zero stop switches every row to another formula.
    stop = np.asarray(stop, dtype=np.float64)
    edges = np.arange(bins + 1, dtype=np.float64) * (stop / bins)[:, None]
    edges[:, -1] = stop
    return edges


def log_edges(start: np.ndarray, stop: np.ndarray, bins: int) -> np.ndarray:
    """[n, bins + 1] float64 edges exp(ln start + j (ln stop - ln start) / bins), endpoints exact."""
    start = np.asarray(start, dtype=np.float64)
    stop = np.asarray(stop, dtype=np.float64)
    log_step = (np.log(stop) - np.log(start)) / bins
    edges = np.exp(np.log(start)[:, None] + np.arange(bins + 1) * log_step[:, None])
    edges[:, 0] = start
    edges[:, -1] = stop
    return edges


def bin_index(edges: np.ndarray, row: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Bin of each value within edges[row] as np.histogram assigns it; -1 outside the edges."""
    n_edges = edges.shape[1]
    # Binary search for the number of edges <= value (searchsorted side="right"), all rows at once.
    lo = np.zeros(value.shape, dtype=np.int64)
    hi = np.full(value.shape, n_edges, dtype=np.int64)
    for _ in range(n_edges.bit_length()):
        searching = lo < hi
        mid = np.minimum((lo + hi) // 2, n_edges - 1)
        below = edges[row, mid] <= value
        lo = np.where(searching & below, mid + 1, lo)
        hi = np.where(searching & ~below, mid, hi)
    on_last_edge = value == edges[row, n_edges - 1]
    inside = (lo > 0) & ((lo < n_edges) | on_last_edge)
    return np.where(inside, np.minimum(lo - 1, n_edges - 2), -1)
