import numpy as np
import pytest

from saeflow.analysis.percentiles import percentiles
from saeflow.errors import SaeflowError

from .problems import make_problem

QS = [0, 1, 10, 25, 50, 90, 99, 99.5, 100, 33.3]


@pytest.mark.parametrize("tied", [True, False])
def test_equal_to_np_percentile_per_feature(tied):
    problem = make_problem(16, n_seqs=25, tied=tied)
    for first, stop in [(0, problem.n_features), (1, 4)]:
        got = percentiles(problem.shard(first, stop), QS)
        assert got.shape == (stop - first, len(QS))
        for row, column in zip(got, problem.dense[:, first:stop].T):
            values = column[column != 0]
            if values.size:
                np.testing.assert_array_equal(row, np.percentile(values, QS))
            else:
                assert np.isnan(row).all()


def test_single_and_two_values():
    problem = make_problem(17, n_seqs=2)
    problem.dense[:, 2:] = 0
    problem.dense[0, 2] = 1.25
    problem.dense[[0, 1], 3] = [0.1, 0.3]
    got = percentiles(problem.shard(2, 4), QS)
    np.testing.assert_array_equal(got[0], 1.25)
    np.testing.assert_array_equal(got[1], np.percentile(np.float32([0.1, 0.3]), QS))


def test_out_of_range_is_an_error():
    with pytest.raises(SaeflowError):
        percentiles(make_problem(0).shard(0, 2), [50, 101])
