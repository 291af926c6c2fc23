"""The shortcuts for already-sorted input give exactly what the general (sorting) paths give."""

import dataclasses

import numpy as np
import pytest

from saeflow import decoder_tables
from saeflow.analysis import percentiles
from saeflow.analysis.contexts import activations_at
from saeflow.analysis.detection import DocMax, detection_scores, item_maxima
from saeflow.analysis.groups import is_sorted
from saeflow.analysis.neighbours import coactivation_neighbours
from saeflow.analysis.quantile_examples import sample_bands
from saeflow.analysis.top_examples import SeqMax, sequence_maxima, top_sequences

from .problems import make_problem
from .test_neighbours import oracle_jaccard


def shuffled(entries, seed):
    """The same entries in a random order: the sorted shortcuts no longer apply."""
    order = np.random.default_rng(seed).permutation(entries.token.size)
    return dataclasses.replace(entries, token=entries.token[order], feature=entries.feature[order],
                               value=entries.value[order])


def assert_same(a, b):
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        assert x.dtype == y.dtype, field.name
        np.testing.assert_array_equal(x, y, err_msg=field.name)


@pytest.mark.parametrize("seed, tied", [(0, True), (1, True), (2, False)])
def test_run_reductions_match_the_lexsort_path(seed, tied):
    problem = make_problem(seed, n_features=12, n_seqs=20, tied=tied)
    shard = problem.shard(3, 11)
    assert is_sorted(shard.feature, np.asarray(problem.seq)[shard.token])
    mixed = shuffled(shard, seed)
    assert_same(sequence_maxima(shard, problem.seq), sequence_maxima(mixed, problem.seq))
    assert_same(item_maxima(shard, problem.doc), item_maxima(mixed, problem.doc))


@pytest.mark.parametrize("seed, tied", [(9, True), (10, False)])
def test_top_and_band_examples_of_sorted_and_shuffled_maxima(seed, tied):
    problem = make_problem(seed, n_features=12, n_seqs=40, tied=tied)
    maxima = sequence_maxima(problem.shard(0, 12), problem.seq)
    order = np.random.default_rng(seed).permutation(maxima.seq.size)
    mixed = SeqMax(*(getattr(maxima, field.name)[order] for field in dataclasses.fields(SeqMax)))
    for top_k in (1, 3, 50):
        assert_same(top_sequences(maxima, top_k), top_sequences(mixed, top_k))
    for bands, per_band in ((1, 2), (4, 1), (10, 5)):
        assert_same(sample_bands(maxima, bands, per_band, seed), sample_bands(mixed, bands, per_band, seed))


@pytest.mark.parametrize("seed", [3, 4])
def test_activations_at_sorted_and_shuffled_entries(seed):
    problem = make_problem(seed, n_features=12, n_seqs=20)
    shard = problem.shard(2, 9)
    rng = np.random.default_rng(seed)
    feature = rng.integers(-1, 14, 500)  # also features outside the shard
    token = rng.integers(-2, problem.n_tokens + 3, 500)  # and tokens outside the corpus
    expected = np.where((feature >= 2) & (feature < 9) & (token >= 0) & (token < problem.n_tokens),
                        problem.dense[np.clip(token, 0, problem.n_tokens - 1), np.clip(feature, 0, 11)], 0)
    np.testing.assert_array_equal(activations_at(shard, feature, token), expected)
    np.testing.assert_array_equal(activations_at(shuffled(shard, seed), feature, token), expected)


def test_packed_sort_matches_lexsort():
    rng = np.random.default_rng(5)
    local = rng.integers(0, 40, 3000)
    value = np.concatenate([rng.uniform(0, 5, 2992), [np.inf, 1e-45, 3e38], np.full(5, 2.5)]).astype(np.float32)
    value[value == 0] = 1.0
    expected = value[np.lexsort((value, local))]
    np.testing.assert_array_equal(percentiles._sorted_within_features(local, value), expected)
    value[0] = -1.0  # not all positive: the lexsort path
    np.testing.assert_array_equal(percentiles._sorted_within_features(local, value),
                                  value[np.lexsort((value, local))])


def test_coactivation_rows_never_list_unshared_features_or_themselves():
    problem = make_problem(7, n_features=12)
    counts = problem.cooccurrences(range(12))
    found = coactivation_neighbours(counts, 0, np.diagonal(counts).copy(), n=11)
    assert (found.other != found.feature).all()
    assert (counts[found.feature, found.other] > 0).all()
    assert np.array_equal(np.bincount(found.feature, minlength=12), (counts > 0).sum(1) - (np.diagonal(counts) > 0))


@pytest.mark.parametrize("block_features", [1, 3, 100])
def test_coactivation_table_streamed_over_chunks_matches_the_oracle(monkeypatch, block_features):
    problem = make_problem(8, n_features=12, n_seqs=30)
    chunks = {f"c{i}": problem.chunk(a, b) for i, (a, b) in enumerate(problem.chunk_bounds())}
    monkeypatch.setattr(decoder_tables, "read_sparse_chunk", lambda path, n_features: chunks[path])
    monkeypatch.setattr(decoder_tables, "_COACTIVATION_BLOCK_BYTES", 8 * 12 * block_features)
    n_active = np.count_nonzero(problem.dense, axis=0)
    table = decoder_tables.coactivation_table(list(chunks), range(2, 11), 12, n_active, 4)
    rows = list(zip(*(table[name].to_pylist() for name in ("feature", "rank", "other", "score"))))
    assert rows == [row for row in oracle_jaccard(problem.dense, 4) if 2 <= row[0] < 11]
    assert set(table["kind"].to_pylist()) == {"coactivation"}


def test_detection_ranks_packed_or_lexsorted():
    problem = make_problem(11, n_features=12, n_seqs=40)
    maxima = item_maxima(problem.shard(0, 12), problem.doc)
    n_docs = int(problem.doc.max()) + 1
    member_doc = np.arange(n_docs).repeat(2)
    member_label = np.tile([0, 1], n_docs) + (member_doc % 3 == 0)
    thresholds = np.full(12, 1.2)
    wide = DocMax(maxima.unit, maxima.doc, maxima.value.astype(np.float64))  # not packable: lexsort
    assert_same(detection_scores(maxima, thresholds, member_doc, member_label, n_docs, 3),
                detection_scores(wide, thresholds, member_doc, member_label, n_docs, 3))


@pytest.mark.parametrize("bands, per_band", [(3, 1), (10, 5), (2, 0)])
def test_band_samples_of_many_sequences_match_the_full_sort(bands, per_band):
    rng = np.random.default_rng(12)
    feature = np.repeat(np.arange(6), [1, 3, 40, 500, 3000, 7000])  # small and large bands alike
    seq = np.concatenate([np.sort(rng.choice(20000, n, replace=False)) for n in np.bincount(feature)])
    activation = rng.choice(np.float32([0.25, 0.5, 1, 2]), feature.size) * rng.integers(1, 4, feature.size)
    token = seq * 7
    maxima = SeqMax(feature, seq, activation.astype(np.float32), token)
    order = rng.permutation(feature.size)
    mixed = SeqMax(feature[order], seq[order], maxima.activation[order], token[order])
    assert_same(sample_bands(maxima, bands, per_band, 3), sample_bands(mixed, bands, per_band, 3))
