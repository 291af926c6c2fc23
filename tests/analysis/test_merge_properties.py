"""Property: chunk partials merged in any grouping equal one pass over all tokens."""

from functools import reduce

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from saeflow.analysis.detection import doc_maxima, merge_doc_maxima
from saeflow.analysis.histograms import histogram_counts, histogram_edges
from saeflow.analysis.neighbours import cooccurrence_counts
from saeflow.analysis.stats import finalize_stats, merge_stats, partial_stats
from saeflow.analysis.top_examples import merge_top, sequence_maxima, top_sequences

from .problems import make_problem


@st.composite
def split_problems(draw):
    problem = make_problem(draw(st.integers(0, 10_000)), tied=draw(st.booleans()))
    # Arbitrary cut points, even inside a sequence or a document.
    cuts = draw(st.lists(st.integers(1, problem.n_tokens - 1), max_size=8))
    return problem, problem.chunk_bounds(cuts)


def merge_tree(merge, parts):
    """Merge neighbours pairwise, to exercise associativity rather than one left fold."""
    while len(parts) > 1:
        parts = [merge(parts[i : i + 2]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    return parts[0]


@settings(max_examples=60, deadline=None)
@given(split_problems(), st.integers(1, 4))
def test_chunked_results_equal_one_pass(split, top_k):
    problem, bounds = split
    whole = problem.entries()
    chunks = [problem.entries(a, b) for a, b in bounds]

    one = finalize_stats(partial_stats(whole, problem.n_tokens))
    partials = [partial_stats(c, b - a) for c, (a, b) in zip(chunks, bounds)]
    merged = finalize_stats(merge_tree(lambda p: reduce(merge_stats, p), partials))
    for name in ("n_active", "density", "min", "max"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(one, name))
    for name in ("mean", "std", "sum"):
        np.testing.assert_allclose(getattr(merged, name), getattr(one, name), rtol=1e-12, atol=1e-12)

    edges = histogram_edges(one.min, one.max, 5, "linear")
    np.testing.assert_array_equal(sum(histogram_counts(c, edges) for c in chunks), histogram_counts(whole, edges))

    top = top_sequences(sequence_maxima(whole, problem.seq), top_k)
    parts = [top_sequences(sequence_maxima(c, problem.seq), top_k) for c in chunks]
    got = merge_tree(lambda p: merge_top(p, top_k), parts)
    for name in ("feature", "rank", "activation", "seq", "token"):
        np.testing.assert_array_equal(getattr(got, name), getattr(top, name))

    docs = merge_tree(merge_doc_maxima, [doc_maxima(c, problem.doc) for c in chunks])
    one_docs = doc_maxima(whole, problem.doc)
    for name in ("unit", "doc", "value"):
        np.testing.assert_array_equal(getattr(docs, name), getattr(one_docs, name))

    def counts(a, b):
        return cooccurrence_counts(problem.indices[a:b], problem.values[a:b], 0, 4, problem.n_features)

    np.testing.assert_array_equal(sum(counts(a, b) for a, b in bounds), counts(0, problem.n_tokens))
