"""Per-feature bin edges and exact bin lookup with np.histogram's convention.

Bins are assigned by comparing against the actual edge values (one search over all rows),
never by dividing by a bin width, so a value lying exactly on an edge lands where
np.histogram(values, edges) puts it: bins half-open [e_i, e_i+1), the last one closed.
"""

from __future__ import annotations

import numpy as np

from saeflow.analysis.groups import packed_key


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
    edge_count = _edges_at_or_below_packed(edges, row, value)
    if edge_count is None:
        edge_count = _edges_at_or_below_bisected(edges, row, value)
    on_last_edge = value == edges[row, n_edges - 1]
    inside = (edge_count > 0) & ((edge_count < n_edges) | on_last_edge)
    return np.where(inside, np.minimum(edge_count - 1, n_edges - 2), -1)


def _edges_at_or_below_packed(edges: np.ndarray, row: np.ndarray, value: np.ndarray) -> np.ndarray | None:
    """Edges of each value's row that are <= it, by one searchsorted over all rows; None unless the
    values are non-negative float32 (the usual case: activations).

    For a float32 value v and a float64 edge e, e <= v exactly when ceil32(e) <= v, with ceil32(e)
    the smallest float32 >= e. packed_key then orders every row's (ceiled) edges after the rows
    before it, so the position of a value's key among the edge keys, less row * n_edges, counts
    its row's edges <= it.
    """
    n_rows, n_edges = edges.shape
    edges32 = edges.astype(np.float32)
    rounded_down = edges32.astype(np.float64) < edges
    edges32[rounded_down] = np.nextafter(edges32[rounded_down], np.float32(np.inf))
    row = np.asarray(row, dtype=np.int64)
    value_keys = packed_key(row, value)
    edge_keys = packed_key(np.repeat(np.arange(n_rows, dtype=np.int64), n_edges), edges32.ravel())
    if value_keys is None or edge_keys is None or (np.diff(edges32, axis=1) < 0).any():
        return None
    return np.searchsorted(edge_keys, value_keys, side="right") - row * n_edges


def _edges_at_or_below_bisected(edges: np.ndarray, row: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Edges of each value's row that are <= it, by a binary search over all rows at once."""
    n_edges = edges.shape[1]
    lo = np.zeros(value.shape, dtype=np.int64)
    hi = np.full(value.shape, n_edges, dtype=np.int64)
    for _ in range(n_edges.bit_length()):
        searching = lo < hi
        mid = np.minimum((lo + hi) // 2, n_edges - 1)
        below = edges[row, mid] <= value
        lo = np.where(searching & below, mid + 1, lo)
        hi = np.where(searching & ~below, mid, hi)
    return lo
