"""Group-by on sorted arrays: where runs of equal keys start and each element's place in its run."""

from __future__ import annotations

import numpy as np


def run_starts(*keys: np.ndarray) -> np.ndarray:
    """True where any key differs from the previous element (the keys sorted together)."""
    n = keys[0].size
    starts = np.zeros(n, dtype=bool)
    if n:
        starts[0] = True
        for key in keys:
            starts[1:] |= key[1:] != key[:-1]
    return starts


def rank_in_runs(starts: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run, given run_starts' mask."""
    position = np.arange(starts.size)
    return position - np.maximum.accumulate(np.where(starts, position, 0))
