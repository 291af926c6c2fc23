"""Property: the tables of any cut into feature shards (as the analysis jobs are cut), and the
co-occurrence counts of any cut into token chunks (as decoder_tables sums them), equal one pass."""

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from saeflow.analysis.detection import item_maxima
from saeflow.analysis.histograms import histogram_counts, histogram_edges
from saeflow.analysis.stats import feature_stats
from saeflow.analysis.top_examples import sequence_maxima, top_sequences

from .problems import make_problem


@st.composite
def split_problems(draw):
    problem = make_problem(draw(st.integers(0, 10_000)), tied=draw(st.booleans()))
    # Arbitrary cut points, even inside a sequence or a document.
    cuts = draw(st.lists(st.integers(1, problem.n_tokens - 1), max_size=8))
    feature_cuts = sorted(set(draw(st.lists(st.integers(1, problem.n_features - 1), max_size=4))))
    shard_bounds = list(zip([0, *feature_cuts], [*feature_cuts, problem.n_features]))
    return problem, problem.chunk_bounds(cuts), shard_bounds


def assert_same_rows(parts, whole):
    """The parts' rows, concatenated in order, equal the whole's."""
    for field in dataclasses.fields(whole):
        joined = np.concatenate([getattr(part, field.name) for part in parts])
        np.testing.assert_array_equal(joined, getattr(whole, field.name), err_msg=field.name)


@settings(max_examples=60, deadline=None)
@given(split_problems(), st.integers(1, 4))
def test_split_results_equal_one_pass(split, top_k):
    problem, bounds, shard_bounds = split
    whole = problem.entries()
    shards = [problem.shard(a, b) for a, b in shard_bounds]

    one = feature_stats(whole, problem.n_tokens)
    parts = [feature_stats(shard, problem.n_tokens) for shard in shards]
    for name in ("n_active", "density", "min", "max"):
        np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in parts]), getattr(one, name))
    for name in ("mean", "std", "sum"):
        np.testing.assert_allclose(np.concatenate([getattr(p, name) for p in parts]), getattr(one, name),
                                   rtol=1e-12, atol=1e-12)

    edges = histogram_edges(one.min, one.max, 5, "linear")
    counts = histogram_counts(whole, edges)
    chunks = [problem.entries(a, b) for a, b in bounds]
    np.testing.assert_array_equal(sum(histogram_counts(c, edges) for c in chunks), counts)
    shard_counts = [histogram_counts(shard, edges[a:b]) for shard, (a, b) in zip(shards, shard_bounds)]
    np.testing.assert_array_equal(np.concatenate(shard_counts), counts)

    top = top_sequences(sequence_maxima(whole, problem.seq), top_k)
    assert_same_rows([top_sequences(sequence_maxima(shard, problem.seq), top_k) for shard in shards], top)
    assert_same_rows([item_maxima(shard, problem.doc) for shard in shards], item_maxima(whole, problem.doc))

    np.testing.assert_array_equal(problem.cooccurrences(range(4), bounds),
                                  problem.cooccurrences(range(4), [(0, problem.n_tokens)]))
