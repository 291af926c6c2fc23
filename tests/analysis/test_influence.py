import numpy as np
import pytest
import torch

from saeflow.analysis.influence import influences
from saeflow.analysis.topk import top_k_per_row


def oracle(W_dec, W_U, k):
    product = W_dec @ W_U
    rows = []
    for f, scores in enumerate(product):
        tokens = np.arange(scores.size)
        for sign, order in (("+", np.lexsort((tokens, -scores))), ("-", np.lexsort((tokens, scores)))):
            rows += [(f, sign, r, int(t), float(scores[t])) for r, t in enumerate(order[:k])]
    return rows


def as_rows(result):
    return list(zip(*(getattr(result, n).tolist() for n in ("feature", "sign", "rank", "token_id", "score"))))


@pytest.mark.parametrize("k", [1, 4, 20])
@pytest.mark.parametrize("block_size", [1, 3, 100])
def test_extremes_match_the_oracle_with_ties(k, block_size):
    rng = np.random.default_rng(k * block_size)
    W_dec = rng.integers(-2, 3, (7, 3)).astype(np.float32)  # small integers: exact products, many ties
    W_U = rng.integers(-2, 3, (3, 11)).astype(np.float32)
    expected = oracle(W_dec, W_U, k)
    assert as_rows(influences(W_dec, W_U, k, block_size)) == expected
    assert as_rows(influences(torch.from_numpy(W_dec), torch.from_numpy(W_U).half(), k, block_size)) == expected


def test_top_k_per_row_breaks_ties_by_column_and_skips_minus_inf():
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0], [-np.inf, 1.0, -np.inf, -np.inf, -np.inf]])
    row, column, value, rank = top_k_per_row(scores, 2)
    np.testing.assert_array_equal(row, [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(column, [1, 2, 0, 1, 1])
    np.testing.assert_array_equal(value, [3.0, 3.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(rank, [0, 1, 0, 1, 0])
    assert top_k_per_row(scores, 0)[0].size == 0


@pytest.mark.parametrize("k", [1, 5, 40])
def test_top_k_per_row_on_wide_rows_matches_a_full_sort(k):
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 30, (6, 1000)).astype(np.float64)  # wide rows with many ties
    scores[0] = np.arange(1000)  # increasing: the column sample sees the smallest values
    scores[1, 500:] = -np.inf
    row, column, value, rank = top_k_per_row(scores, k)
    for r in range(6):
        finite = np.flatnonzero(scores[r] > -np.inf)
        expected = finite[np.lexsort((finite, -scores[r, finite]))][:k]
        np.testing.assert_array_equal(column[row == r], expected)
        np.testing.assert_array_equal(rank[row == r], np.arange(expected.size))
