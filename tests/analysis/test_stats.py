import dataclasses

import numpy as np
import pytest

from saeflow.analysis.stats import FeatureStats, feature_stats
from saeflow.errors import SaeflowError

from .problems import make_problem


def oracle(dense):
    rows = []
    for column in dense.T:
        values = column[column != 0]
        if values.size:
            rows.append((values.size, values.min(), values.max(), values.astype(np.float64).mean(),
                         values.astype(np.float64).std(), values.astype(np.float64).sum()))
        else:
            rows.append((0, np.nan, np.nan, np.nan, np.nan, 0.0))
    return [np.array(column) for column in zip(*rows)]


def assert_matches(stats, dense):
    n_active, low, high, mean, std, total = oracle(dense)
    np.testing.assert_array_equal(stats.feature, np.arange(dense.shape[1]))
    np.testing.assert_array_equal(stats.n_active, n_active)
    np.testing.assert_array_equal(stats.density, n_active / dense.shape[0])
    np.testing.assert_array_equal(stats.min, low)
    np.testing.assert_array_equal(stats.max, high)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(stats.std, std, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats.sum, total, rtol=1e-12)


@pytest.mark.parametrize("tied", [True, False])
def test_all_tokens_and_feature_shards_match_the_oracle(tied):
    problem = make_problem(2, tied=tied)
    assert_matches(feature_stats(problem.entries(), problem.n_tokens), problem.dense)
    shards = [feature_stats(problem.shard(a, b), problem.n_tokens) for a, b in ((0, 3), (3, 4), (4, 10))]
    stats = FeatureStats(*(np.concatenate([getattr(shard, field.name) for shard in shards])
                           for field in dataclasses.fields(FeatureStats)))
    assert_matches(stats, problem.dense)
    assert stats.n_active[0] == 0 and stats.sum[0] == 0 and np.isnan(stats.std[0])  # dead feature
    assert stats.density[1] == 1.0  # fires on every token
    assert stats.std[1] >= 0


def test_a_shard_gives_its_features_rows():
    problem = make_problem(3)
    stats = feature_stats(problem.shard(4, 9), problem.n_tokens)
    np.testing.assert_array_equal(stats.feature, np.arange(4, 9))
    np.testing.assert_array_equal(stats.n_active, np.count_nonzero(problem.dense[:, 4:9], axis=0))


def test_constant_values_have_zero_std():
    problem = make_problem(4)
    problem.dense[problem.dense != 0] = 1.5
    stats = feature_stats(problem.entries(), problem.n_tokens)
    fired = stats.n_active > 0
    assert (stats.std[fired] == 0).all() and np.isnan(stats.std[~fired]).all()


def test_no_tokens_is_an_error():
    problem = make_problem(5)
    with pytest.raises(SaeflowError):
        feature_stats(problem.entries(0, 0), 0)
