"""Row-wise top-k with a deterministic tie rule: larger score first, then smaller column."""

from __future__ import annotations

import numpy as np

from saeflow.analysis.groups import rank_in_runs, run_starts


def top_k_per_row(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, score, rank) of each row's k largest scores, sorted by (row, rank).

    A score of -inf marks an excluded entry and is never chosen, so a row has fewer than k
    where it has fewer other entries. Scores are floats and never NaN.
    """
    n_rows, n_cols = scores.shape
    k = min(k, n_cols)
    if k <= 0 or n_rows == 0:
        nothing = np.zeros(0, dtype=np.int64)
        return nothing, nothing, np.zeros(0, dtype=scores.dtype), nothing
    # The k-th largest of a column sample is a lower bound on the row's k-th largest, so every
    # winner (and every column tied with the last winner) passes it, while only about
    # k * n_cols / sample columns per row do; those few are then sorted exactly.
    stride = max(1, n_cols // max(k, int(4 * np.sqrt(k * n_cols))))
    sample = scores[:, ::stride]
    floor = np.partition(sample, sample.shape[1] - k, axis=1)[:, sample.shape[1] - k, None]
    lowest = np.finfo(scores.dtype).min  # raising a -inf floor to it keeps -inf out
    row, column = np.nonzero(scores >= np.maximum(floor, lowest))
    return top_k_entries(row, column, scores[row, column], k)


def top_k_entries(
    row: np.ndarray, column: np.ndarray, score: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The same selection (and output) from sparse (row, column, score) candidates."""
    order = np.lexsort((column, -score, row))
    row, column, score = row[order], column[order], score[order]
    rank = rank_in_runs(run_starts(row))
    keep = rank < k
    return row[keep], column[keep], score[keep], rank[keep]
