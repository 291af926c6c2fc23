import numpy as np
import pytest

from saeflow.analysis.neighbours import coactivation_neighbours, cosine_neighbours
from saeflow.decoder_tables import add_chunk_cooccurrences
from saeflow.errors import SaeflowError
from saeflow.storage import CsrChunkWriter, read_sparse_chunk

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
        counts = problem.cooccurrences(range(start, stop))
        rows += as_rows(coactivation_neighbours(counts, start, n_active, n))
    assert rows == oracle_jaccard(problem.dense, n)
    assert not any(row[0] == 0 or row[2] == 0 for row in rows)  # the dead feature shares no token


def write_chunk(path, chunk, n_features):
    with CsrChunkWriter(path, chunk.n_tokens, n_features, chunk.token_start, "float32") as out:
        out.append(np.diff(chunk.indptr), chunk.indices, chunk.values)


def test_cooccurrence_counts_of_stored_chunks_are_the_dense_gram_matrix(tmp_path):
    problem = make_problem(19)
    binary = (problem.dense != 0).astype(np.int64)
    counts = np.zeros((4, problem.n_features), dtype=np.int64)
    for i, (a, b) in enumerate(problem.chunk_bounds()):
        write_chunk(tmp_path / f"chunk-{i}.zarr", problem.chunk(a, b), problem.n_features)
        add_chunk_cooccurrences(counts, read_sparse_chunk(tmp_path / f"chunk-{i}.zarr", problem.n_features), 2)
    np.testing.assert_array_equal(counts, (binary.T @ binary)[2:6])
    # A feature id beyond n_features is refused on reading, before any count.
    write_chunk(tmp_path / "bad.zarr", problem.chunk(0, problem.n_tokens), 3)
    with pytest.raises(SaeflowError, match="feature ids span"):
        read_sparse_chunk(tmp_path / "bad.zarr")
