import numpy as np
import pytest

from saeflow.analysis.top_examples import sequence_maxima, top_sequences

from .problems import make_problem


def oracle_maxima(problem):
    """(feature, seq, activation, token) of every sequence where a feature fires."""
    rows = []
    for f in range(problem.n_features):
        for s in np.unique(problem.seq):
            tokens = np.flatnonzero(problem.seq == s)
            column = problem.dense[tokens, f]
            if column.max() > 0:
                rows.append((f, s, column.max(), tokens[np.argmax(column)]))  # argmax: first if tied
    return rows


def oracle_top(problem, top_k):
    rows = sorted(oracle_maxima(problem), key=lambda r: (r[0], -r[2], r[1]))
    out, seen = [], {}
    for row in rows:
        rank = seen.get(row[0], 0)
        seen[row[0]] = rank + 1
        if rank < top_k:
            out.append((row[0], rank, row[2], row[1], row[3]))
    return out


def as_rows(examples):
    return list(zip(*(getattr(examples, n).tolist() for n in ("feature", "rank", "activation", "seq", "token"))))


def test_sequence_maxima_match_the_oracle():
    problem = make_problem(8)
    maxima = sequence_maxima(problem.entries(), problem.seq)
    got = list(zip(maxima.feature.tolist(), maxima.seq.tolist(), maxima.activation.tolist(), maxima.token.tolist()))
    assert got == [(f, int(s), float(a), int(t)) for f, s, a, t in oracle_maxima(problem)]


@pytest.mark.parametrize("top_k", [1, 3, 50])
def test_top_sequences_of_all_tokens_and_of_feature_shards_match_the_oracle(top_k):
    problem = make_problem(9)
    expected = [(f, r, float(a), int(s), int(t)) for f, r, a, s, t in oracle_top(problem, top_k)]
    whole = top_sequences(sequence_maxima(problem.entries(), problem.seq), top_k)
    assert as_rows(whole) == expected
    shards = [problem.shard(a, b) for a, b in ((0, 2), (2, 7), (7, 10))]
    rows = [row for shard in shards for row in as_rows(top_sequences(sequence_maxima(shard, problem.seq), top_k))]
    assert rows == expected
    assert 0 not in whole.feature  # the dead feature has no examples


def test_a_csc_shard_gives_the_same_examples():
    problem = make_problem(10)
    whole = top_sequences(sequence_maxima(problem.entries(), problem.seq), 4)
    shard = top_sequences(sequence_maxima(problem.shard(2, 6), problem.seq), 4)
    in_shard = (whole.feature >= 2) & (whole.feature < 6)
    assert as_rows(shard) == [row for row, keep in zip(as_rows(whole), in_shard) if keep]

