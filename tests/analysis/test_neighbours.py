import numpy as np
import pytest

from saeflow.analysis.neighbours import coactivation_neighbours, cooccurrence_counts, cosine_neighbours
from saeflow.errors import SaeflowError

from .problems import make_problem


def ranked(scores_by_other, n):
    """(rank, other, score) of the n best, ties to the smaller id."""
    best = sorted(scores_by_other.items(), key=lambda item: (-item[1], item[0]))[:n]
    return [(r, o, s) for r, (o, s) in enumerate(best)]


def as_rows(result):
    return list(zip(*(getattr(result, n).tolist() for n in ("feature", "rank", "other", "score"))))


@pytest.mark.parametrize("n, block_size", [(1, 2), (3, 4), (20, 100)])
def test_cosine_matches_the_oracle(n, block_size):
    rng = np.random.default_rng(n)
    W_dec = rng.integers(-3, 4, (9, 4)).astype(np.float32)  # integers: exact dot products
    W_dec[5] = W_dec[2]  # duplicate rows tie exactly
    W_dec[7] = W_dec[2]
    W_dec[4] = 0  # a zero row: cosine 0 with everything
    norm = [np.sqrt(np.float32(w @ w)) for w in W_dec]
    expected = []
    for f in range(9):
        scores = {
            g: float(np.float32(W_dec[f] @ W_dec[g]) / (norm[f] * norm[g])) if norm[f] * norm[g] > 0 else 0.0
            for g in range(9) if g != f
        }
        expected += [(f, r, o, s) for r, o, s in ranked(scores, n)]
    assert as_rows(cosine_neighbours(W_dec, n, block_size)) == expected


def oracle_jaccard(dense, n):
    active = [set(np.flatnonzero(column).tolist()) for column in dense.T]
    rows = []
    for f, mine in enumerate(active):
        scores = {g: len(mine & other) / len(mine | other) for g, other in enumerate(active) if g != f and mine & other}
        rows += [(f, r, o, s) for r, o, s in ranked(scores, n)]
    return rows


@pytest.mark.parametrize("n, block", [(2, 3), (4, 10), (50, 1)])
def test_coactivation_matches_the_oracle(n, block):
    problem = make_problem(18, n_seqs=15)
    n_active = np.count_nonzero(problem.dense, axis=0)
    rows = []
    for start in range(0, problem.n_features, block):
        stop = min(start + block, problem.n_features)
        counts = sum(
            cooccurrence_counts(problem.indices[a:b], problem.values[a:b], start, stop, problem.n_features)
            for a, b in problem.chunk_bounds()
        )
        rows += as_rows(coactivation_neighbours(counts, start, n_active, n))
    assert rows == oracle_jaccard(problem.dense, n)
    assert not any(row[0] == 0 or row[2] == 0 for row in rows)  # the dead feature shares no token


def test_cooccurrence_counts_are_the_dense_gram_matrix():
    problem = make_problem(19)
    binary = (problem.dense != 0).astype(np.int64)
    counts = cooccurrence_counts(problem.indices, problem.values, 2, 6, problem.n_features)
    np.testing.assert_array_equal(counts, (binary.T @ binary)[2:6])
    with pytest.raises(SaeflowError):
        cooccurrence_counts(problem.indices, problem.values, 0, 2, n_features=3)
