import numpy as np
import pytest

from saeflow.analysis.contexts import activations_at, context_windows
from saeflow.analysis.top_examples import sequence_maxima, top_sequences

from .problems import make_problem


@pytest.mark.parametrize("context", [0, 1, 3])
def test_windows_and_their_activations_match_the_oracle(context):
    problem = make_problem(13, n_seqs=20)
    examples = top_sequences(sequence_maxima(problem.entries(), problem.seq), 3)
    windows = context_windows(examples.token, problem.seq, context)
    acts = activations_at(problem.entries(), np.repeat(examples.feature, np.diff(windows.offsets)), windows.token)
    for i, (f, t) in enumerate(zip(examples.feature, examples.token)):
        tokens = np.flatnonzero(problem.seq == problem.seq[t])
        pos = t - tokens[0]
        expected = tokens[max(pos - context, 0) : pos + context + 1]
        assert windows.pos[i] == pos
        np.testing.assert_array_equal(windows.token[windows.offsets[i] : windows.offsets[i + 1]], expected)
        np.testing.assert_array_equal(acts[windows.offsets[i] : windows.offsets[i + 1]], problem.dense[expected, f])


def test_activations_from_a_token_range_or_a_shard():
    problem = make_problem(15)
    token = np.repeat(np.arange(problem.n_tokens), problem.n_features)
    feature = np.tile(np.arange(problem.n_features), problem.n_tokens)
    a, b = problem.chunk_bounds()[1]
    in_chunk = (token >= a) & (token < b)
    got = activations_at(problem.entries(a, b), feature, token)
    np.testing.assert_array_equal(got, np.where(in_chunk, problem.dense[token, feature], 0))
    in_shard = (feature >= 2) & (feature < 5)
    got = activations_at(problem.shard(2, 5), feature, token)
    np.testing.assert_array_equal(got, np.where(in_shard, problem.dense[token, feature], 0))
    assert activations_at(problem.entries(0, 0), feature, token).sum() == 0
