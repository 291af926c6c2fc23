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


def is_sorted(*keys: np.ndarray) -> bool:
    """True if the rows (keys[0][i], keys[1][i], ...) never decrease, the first key most significant."""
    if keys[0].size < 2:
        return True
    tied = np.ones(keys[0].size - 1, dtype=bool)  # rows equal on every key so far
    for key in keys:
        if (tied & (key[1:] < key[:-1])).any():
            return False
        tied &= key[1:] == key[:-1]
    return True


def run_maxima(starts: np.ndarray, value: np.ndarray, tiebreak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each run's max value and the smallest tiebreak among the elements reaching it.

    starts: the runs' first indices (ascending, starting at 0), runs contiguous and non-empty.
    """
    best = np.maximum.reduceat(value, starts)
    reaches = value == np.repeat(best, np.diff(np.append(starts, value.size)))
    never = np.iinfo(tiebreak.dtype).max
    return best, np.minimum.reduceat(np.where(reaches, tiebreak, never), starts)


def packed_key(group: np.ndarray, value: np.ndarray, descending: bool = False) -> np.ndarray | None:
    """One int64 key that orders by (group, value), value descending if asked; None if it can't.

    Non-negative float32s (+0 to +inf) order like their bit patterns, so (group << 32 | bits)
    sorts both at once, far faster than a two-key lexsort. Needs float32 values without sign bit
    or NaN, and groups in [0, 2**31).
    """
    if value.dtype != np.float32 or np.signbit(value).any() or np.isnan(value).any():
        return None
    if group.size and (group.min() < 0 or group.max() >= 2**31):
        return None
    bits = value.view(np.uint32)
    if descending:
        bits = np.uint32(0xFFFFFFFF) - bits
    return (group.astype(np.int64) << 32) | bits.astype(np.int64)
