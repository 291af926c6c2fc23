import numpy as np
import pytest

from saeflow.analysis.entries import csc_entries
from saeflow.analysis.groups import rank_in_runs, run_starts
from saeflow.errors import SaeflowError

from .problems import make_problem


def triples(entries):
    order = np.lexsort((entries.feature, entries.token))
    return entries.token[order], entries.feature[order], entries.value[order]


def test_csc_entries_hold_the_activations():
    problem = make_problem(0)
    token, feature = np.nonzero(problem.dense)
    got = triples(problem.shard(0, problem.n_features))
    np.testing.assert_array_equal(got[0], token)
    np.testing.assert_array_equal(got[1], feature)
    np.testing.assert_array_equal(got[2], problem.dense[token, feature])
    assert got[2].dtype == np.float32


def test_shard_entries_keep_global_feature_ids():
    problem = make_problem(1)
    shard = problem.shard(3, 7)
    assert (shard.first_feature, shard.n_features) == (3, 4)
    assert set(shard.feature.tolist()) <= {3, 4, 5, 6}
    assert shard.feature.size == np.count_nonzero(problem.dense[:, 3:7])


def test_csc_entries_of_an_indptr_slice_widen_float16_and_skip_zeros():
    indptr = np.array([5, 7, 7, 8])  # features 4..6 of a store: entries 5..7
    value = np.array([1.5, 0, 0.25], dtype=np.float16)  # a value rounded to zero is not active
    entries = csc_entries(indptr, np.array([10, 11, 11]), value, first_feature=4)
    assert entries.value.dtype == np.float32 and entries.n_features == 3
    np.testing.assert_array_equal(entries.token, [10, 11])
    np.testing.assert_array_equal(entries.feature, [4, 6])


def test_csc_entries_reject_bad_input():
    with pytest.raises(SaeflowError, match="indptr"):
        csc_entries(np.array([0, 2, 1]), np.zeros(1), np.zeros(1))
    with pytest.raises(SaeflowError, match="spans"):
        csc_entries(np.array([0, 2]), np.zeros(2), np.zeros(3))


def test_runs():
    a = np.array([0, 0, 1, 1, 1, 2])
    b = np.array([0, 1, 1, 1, 2, 2])
    np.testing.assert_array_equal(run_starts(a), [1, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(rank_in_runs(run_starts(a, b)), [0, 0, 0, 1, 0, 0])


def test_problems_cover_the_edge_cases():
    for seed in range(5):
        problem = make_problem(seed)
        assert any(b - a == 1 for a, b in problem.chunk_bounds())  # a chunk of a single token
        assert not problem.dense[:, 0].any() and problem.dense[:, 1].all()  # dead and always-on features
