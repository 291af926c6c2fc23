import numpy as np
import pytest

from saeflow.analysis import binning
from saeflow.analysis.binning import bin_index
from saeflow.analysis.histograms import histogram_counts, histogram_edges
from saeflow.analysis.stats import feature_stats
from saeflow.errors import SaeflowError

from .problems import make_problem


def edges_for(problem, bins, scale):
    stats = feature_stats(problem.entries(), problem.n_tokens)
    return stats, histogram_edges(stats.min, stats.max, bins, scale)


@pytest.mark.parametrize("scale", ["linear", "log"])
@pytest.mark.parametrize("bins", [1, 4, 7])
def test_counts_match_np_histogram_and_merge_by_addition(scale, bins):
    problem = make_problem(6, tied=bins != 7)
    stats, edges = edges_for(problem, bins, scale)
    counts = histogram_counts(problem.entries(), edges)
    for f, column in enumerate(problem.dense.T):
        expected, _ = np.histogram(column[column != 0], edges[f])
        np.testing.assert_array_equal(counts[f], expected)
    np.testing.assert_array_equal(counts.sum(axis=1), stats.n_active)
    chunked = sum(histogram_counts(problem.entries(a, b), edges) for a, b in problem.chunk_bounds())
    np.testing.assert_array_equal(chunked, counts)


def test_edges_follow_the_contract():
    problem = make_problem(7)
    stats, linear = edges_for(problem, 5, "linear")
    _, log = edges_for(problem, 5, "log")
    assert (linear[0] == 0).all() and (log[0] == 0).all()  # the dead feature
    for f in range(1, problem.n_features):
        np.testing.assert_array_equal(linear[f], np.linspace(0.0, float(stats.max[f]), 6))
        np.testing.assert_allclose(log[f], np.geomspace(float(stats.min[f]), float(stats.max[f]), 6), rtol=1e-12)
        assert (log[f, 0], log[f, -1]) == (stats.min[f], stats.max[f])
        assert (np.diff(log[f]) >= 0).all()


def test_values_on_edges_land_where_numpy_puts_them():
    rng = np.random.default_rng(0)
    edges = np.sort(rng.uniform(0, 3, (4, 6)), axis=1)
    edges[1, 2:4] = edges[1, 2]  # an empty bin
    edges[2, 4:] = edges[2, 4]  # an empty last bin: its equal edge still counts in the last
    edges[3] = 0.7  # all edges equal
    row = np.repeat(np.arange(4), 8)
    value = np.concatenate([np.concatenate([e, [e[0] - 1e-9, e[-1] + 1e-9]]) for e in edges])
    got = bin_index(edges, row, value)
    for r in range(4):
        mine = got[row == r]
        for v, b in zip(value[row == r], mine):
            expected, _ = np.histogram([v], edges[r])
            assert (b == -1 and expected.sum() == 0) or expected[b] == 1


@pytest.mark.parametrize("seed", [1, 2])
def test_float32_values_next_to_float64_edges_land_where_numpy_puts_them(seed):
    # The float32 path compares against each edge rounded up to float32: values just below, on and
    # just above that rounding, and edges that are exact float32s, must all match np.histogram.
    rng = np.random.default_rng(seed)
    edges = np.sort(rng.uniform(0, 3, (5, 7)), axis=1)
    edges[1] = np.float32(edges[1])  # exactly representable edges
    edges[2, 3:5] = edges[2, 3]  # an empty bin
    edges[3] = 0.0  # a dead feature's edges
    edges[4, 0] = 0.0
    near = edges.astype(np.float32)[..., None] + np.float32([0, 0, 0])
    near[..., 0] = np.nextafter(near[..., 1], np.float32(-1))
    near[..., 2] = np.nextafter(near[..., 1], np.float32(9))
    value = np.concatenate([near.reshape(5, -1), rng.uniform(0, 3.5, (5, 30)).astype(np.float32)], axis=1)
    value = np.abs(value)  # nextafter below 0 gives a negative: the float32 path needs values >= 0
    row = np.repeat(np.arange(5), value.shape[1])
    assert binning._edges_at_or_below_packed(edges, row, value.ravel()) is not None  # the float32 path runs
    got = bin_index(edges, row, value.ravel())
    bisected = bin_index(edges, row, value.ravel().astype(np.float64))  # the general path
    for r in range(5):
        for v, b, b64 in zip(value[r], got[row == r], bisected[row == r]):
            expected, _ = np.histogram([v], edges[r])
            assert b == b64
            assert (b == -1 and expected.sum() == 0) or expected[b] == 1


def test_bad_settings_are_errors():
    with pytest.raises(SaeflowError):
        histogram_edges(np.array([1.0]), np.array([2.0]), 4, "sqrt")
    with pytest.raises(SaeflowError):
        histogram_edges(np.array([1.0]), np.array([2.0]), 0, "linear")
    with pytest.raises(SaeflowError):
        histogram_edges(np.array([0.0]), np.array([2.0]), 4, "log")
