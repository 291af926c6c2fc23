"""The per-feature tables of a feature shard, against brute-force numpy on the dense matrix."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saeflow.concept_items import ConceptCorpus
from saeflow.decoder_tables import coactivation_table, cosine_table, influence_table
from saeflow.feature_shard import AnalysisParams, CorpusIndex, analyse_shard, joined_labels, shard_range
from saeflow.feature_store import transpose_store
from saeflow.storage import CsrChunkWriter

SEQ_LENGTHS = [12, 1, 9, 8, 10, 7]
SEQ_DOC = [0, 1, 2, 2, 3, 3]
DOC_LABELS = [["x"], [], ["x", "y"], ["y"]]
DOC_CALIBRATION = np.array([True, False, True, False])
# Character spans: content token i of a document covers characters [3i, 3i + 2).
DOC_SPANS = [[{"start": 6, "end": 7, "label": "t"}], [], [{"start": 0, "end": 5, "label": "s"}],
             [{"start": 4, "end": 10, "label": "s"}, {"start": 0, "end": 2, "label": "t"}]]
N_FEATURES, K = 10, 3
PARAMS = AnalysisParams(top_k=2, context=2, bins=4, percentiles=(50, 99.5), detection_percentile=50,
                        quantile_bands=3, per_band=2, seed=7)


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """A dense [tokens, features] matrix with ≤ K active per token, stored as CSR chunks and CSC."""
    tmp = tmp_path_factory.mktemp("shard")
    rng = np.random.default_rng(0)
    n_tokens = sum(SEQ_LENGTHS)
    token_seq = np.repeat(np.arange(len(SEQ_LENGTHS)), SEQ_LENGTHS)
    dense = np.zeros((n_tokens, N_FEATURES), dtype=np.float32)
    dense[:, 0] = rng.uniform(0.5, 1.0, n_tokens)  # active on every token
    for t in range(n_tokens):  # up to two more of features 1..9, never feature 5 (dead)
        others = rng.choice([1, 2, 3, 4, 6, 7, 8, 9], size=rng.integers(0, K), replace=False)
        dense[t, others] = rng.integers(1, 6, size=len(others)) / 4  # few distinct values: ties
    token_id = rng.integers(0, 8, n_tokens)
    vocab_id = np.arange(8)
    doc_of_token = np.asarray(SEQ_DOC)[token_seq]
    df = np.array([len(set(doc_of_token[token_id == v])) for v in vocab_id])
    special = np.concatenate([[True] + [False] * (n - 1) for n in SEQ_LENGTHS])  # a BOS per sequence
    within_doc = np.concatenate([np.cumsum(~special[doc_of_token == d]) - 1 for d in range(len(DOC_LABELS))])
    start = np.where(special, -1, 3 * within_doc)
    concepts = ConceptCorpus(doc_of_token, ~special, start, np.where(special, -1, start + 2), DOC_CALIBRATION,
                             DOC_LABELS, DOC_SPANS)
    corpus = CorpusIndex(token_seq, doc_of_token, token_id, vocab_id[df > 0],
                         np.array([f"<t{v}>" for v in vocab_id[df > 0]], dtype=object),
                         np.log(len(DOC_LABELS) / df[df > 0]), concepts)
    chunks, bounds = [], [0, 13, 22, n_tokens]  # chunk boundaries on sequence boundaries
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        rows, columns = np.nonzero(dense[a:b])  # row-major: each token's ids ascending
        with CsrChunkWriter(tmp / f"chunk-{i:04d}.zarr", b - a, N_FEATURES, a, "float32") as w:
            w.append(np.bincount(rows, minlength=b - a), columns, dense[a:b][rows, columns])
        chunks.append(tmp / f"chunk-{i:04d}.zarr")
    transpose_store(chunks, tmp / "by_feature.zarr", N_FEATURES)
    return dense, corpus, chunks, tmp / "by_feature.zarr"


def analyse(problem, n_shards):
    dense, corpus, _, by_feature = problem
    pieces = [analyse_shard(by_feature, shard_range(N_FEATURES, n_shards, s), corpus, PARAMS) for s in range(n_shards)]
    return {name: pa.concat_tables([p[name] for p in pieces]).to_pylist() for name in pieces[0]}


@pytest.fixture(scope="module")
def tables(problem):
    return analyse(problem, 3)


def test_any_sharding_gives_the_same_tables(problem, tables):
    for n_shards in (1, 4, N_FEATURES):
        assert analyse(problem, n_shards) == tables


def test_feature_stats_and_histograms(problem, tables):
    dense = problem[0]
    for row, hist in zip(tables["feature_stats"], tables["histograms"]):
        values = dense[:, row["feature"]][dense[:, row["feature"]] > 0].astype(np.float64)
        assert row["n_active"] == len(values) and row["density"] == len(values) / len(dense)
        assert sum(hist["counts"]) == len(values)
        if not len(values):
            assert row["feature"] == 5 and row["sum"] == 0 and row["max"] is None and row["mean"] is None
            assert set(hist["counts"]) == {0}
            continue
        assert row["sum"] == pytest.approx(values.sum()) and row["std"] == pytest.approx(values.std())
        assert (row["min"], row["max"]) == (pytest.approx(values.min()), pytest.approx(values.max()))
        assert hist["edges"] == pytest.approx(np.linspace(0, values.max(), 5).tolist())
        assert hist["counts"] == np.histogram(values, bins=hist["edges"])[0].tolist()
    assert tables["feature_stats"][0]["n_active"] == len(dense)


def expected_examples(problem, feature, seqs):
    """Oracle rows for the given sequences of a feature: max, first position of it, context."""
    dense, corpus, _, _ = problem
    rows = []
    for seq in seqs:
        where = np.flatnonzero(corpus.token_seq == seq)
        acts = dense[where, feature]
        pos = int(np.argmax(acts))
        window = where[max(0, pos - 2) : pos + 3]
        rows.append({"activation": pytest.approx(acts[pos]), "seq": seq, "pos": pos,
                     "tokens": [f"<t{v}>" for v in corpus.token_id[window]],
                     "acts": pytest.approx(dense[window, feature].tolist())})
    return rows


def test_top_examples_follow_the_tie_rule(problem, tables):
    dense, corpus = problem[0], problem[1]
    for feature in range(N_FEATURES):
        seq_max = np.array([dense[corpus.token_seq == s, feature].max() for s in range(len(SEQ_LENGTHS))])
        ranked = [s for s in sorted(range(len(seq_max)), key=lambda s: (-seq_max[s], s)) if seq_max[s] > 0][:2]
        got = [r for r in tables["top_examples"] if r["feature"] == feature]
        assert [r["rank"] for r in got] == list(range(len(ranked)))
        assert [{k: r[k] for k in ("activation", "seq", "pos", "tokens", "acts")} for r in got] == \
            expected_examples(problem, feature, ranked)


def test_quantile_examples_come_from_their_band(problem, tables):
    dense, corpus = problem[0], problem[1]
    for feature in range(N_FEATURES):
        seq_max = np.array([dense[corpus.token_seq == s, feature].max() for s in range(len(SEQ_LENGTHS))])
        got = [r for r in tables["quantile_examples"] if r["feature"] == feature]
        if feature == 5:
            assert got == []
            continue
        bands = np.histogram_bin_edges([0, seq_max.max()], bins=3)
        for band in range(3):
            in_band = [s for s in range(len(seq_max)) if seq_max[s] > 0 and bands[band] <= seq_max[s]
                       and (seq_max[s] < bands[band + 1] or (band == 2 and seq_max[s] <= bands[3]))]
            rows = [r for r in got if r["band"] == band]
            assert len(rows) == min(2, len(in_band)) and {r["seq"] for r in rows} <= set(in_band)
            assert [r["activation"] for r in rows] == sorted((r["activation"] for r in rows), reverse=True)
            assert [{k: r[k] for k in ("activation", "seq", "pos", "tokens", "acts")} for r in rows] == \
                expected_examples(problem, feature, [r["seq"] for r in rows])


def test_percentiles_and_labels(problem, tables):
    corpus = problem[1]
    idf = dict(zip(corpus.vocab_id.tolist(), corpus.vocab_idf.tolist()))
    labels = {r["feature"]: r for r in tables["labels"]}
    for row in tables["percentiles"]:
        top = [r for r in tables["top_examples"] if r["feature"] == row["feature"]]
        context = [int(t[2:-1]) for r in top for t in r["tokens"]]
        if not context:
            assert row["feature"] not in labels
            continue
        counts = np.bincount(context, minlength=8)
        score = {v: counts[v] / len(context) * idf[v] for v in set(context)}
        best = sorted(score, key=lambda v: (-score[v], v))[:3]
        assert labels[row["feature"]]["tokens"] == [f"<t{v}>" for v in best]
        assert labels[row["feature"]]["label"] == ", ".join(f"<t{v}>" for v in best)



def calibration_values(problem, feature):
    """The feature's nonzero values on content tokens of calibration documents."""
    dense, corpus = problem[0], problem[1]
    concepts = corpus.concepts
    column = dense[concepts.content & DOC_CALIBRATION[concepts.token_doc], feature]
    return column[column > 0]


def test_calibration_stats_and_thresholds_come_from_calibration_content_tokens(problem, tables):
    concepts = problem[1].concepts
    n_calibration = (concepts.content & DOC_CALIBRATION[concepts.token_doc]).sum()
    assert 0 < n_calibration < len(problem[0])
    for stats, row in zip(tables["calibration_stats"], tables["percentiles"]):
        values = calibration_values(problem, row["feature"])
        assert stats["n_active"] == len(values) and stats["density"] == len(values) / n_calibration
        expected = np.percentile(values, [50, 99.5]).tolist() if len(values) else [None, None]
        assert [row["p50"], row["p99_5"]] == (pytest.approx(expected) if len(values) else expected)
    every = [r["n_active"] for r in tables["feature_stats"]]
    assert sum(r["n_active"] for r in tables["calibration_stats"]) < sum(every)


def scored_items(problem, level, split):
    """Per item the token indices it covers, and per label the items that carry it."""
    concepts = problem[1].concepts
    docs = [d for d in range(len(DOC_LABELS)) if DOC_CALIBRATION[d] == (split == "calibration")]
    items, labels = [], {}
    for d in docs:
        tokens = [t for t in np.flatnonzero(concepts.token_doc == d) if concepts.content[t]]
        if level == "document" and tokens:
            for name in DOC_LABELS[d]:
                labels.setdefault(name, set()).add(len(items))
            items.append(tokens)
        for t in tokens if level == "token" else []:
            for span in DOC_SPANS[d]:
                if concepts.token_start[t] < span["end"] and concepts.token_end[t] > span["start"]:
                    labels.setdefault(span["label"], set()).add(len(items))
            items.append([t])
    return items, labels


def test_detection_on_both_levels_and_splits(problem, tables):
    dense = problem[0]
    thresholds = {r["feature"]: r["p50"] for r in tables["percentiles"]}
    names = {"document": ["x", "y"], "token": ["s", "t"]}
    for row in tables["detection"]:
        feature, label = row["unit"], row["label"]
        items, labels = scored_items(problem, row["level"], row["split"])
        score = np.array([dense[tokens, feature].max() for tokens in items])
        positive = np.isin(np.arange(len(items)), list(labels.get(label, ())))
        threshold = thresholds[feature]
        assert row["threshold"] == threshold
        detected = score >= threshold if threshold is not None else np.zeros(len(items), bool)
        precision = (detected & positive).sum() / detected.sum() if detected.any() else None
        assert row["precision"] == (pytest.approx(precision) if precision is not None else None)
        recall = (detected & positive).sum() / positive.sum() if positive.any() else None
        assert row["recall"] == (pytest.approx(recall) if recall is not None else None)
        pairs = [(p > n) + 0.5 * (p == n) for p in score[positive] for n in score[~positive]]
        assert row["auroc"] == (pytest.approx(np.mean(pairs)) if pairs else None)
    cells = {(r["label"], r["level"], r["split"]) for r in tables["detection"]}
    assert cells == {(name, level, split) for level in names for name in names[level]
                     for split in ("calibration", "test")}
    assert len(tables["detection"]) == len(cells) * N_FEATURES
    # No test document with content tokens is labelled "x" (doc 1 is a BOS only): no recall nor AUROC there.
    assert {(r["recall"], r["auroc"]) for r in tables["detection"] if (r["label"], r["split"]) == ("x", "test")} \
        == {(None, None)}


def test_decoder_tables(problem):
    dense, _, chunks, _ = problem
    rng = np.random.default_rng(3)
    W_dec, W_U = rng.normal(size=(N_FEATURES, 6)), rng.normal(size=(6, 15))
    features = range(3, 8)
    influences = influence_table(W_dec, W_U, features, 4, lambda ids: [f"tok{i}" for i in ids]).to_pylist()
    scores = W_dec @ W_U
    for f in features:
        plus = [r for r in influences if r["feature"] == f and r["sign"] == "+"]
        minus = [r for r in influences if r["feature"] == f and r["sign"] == "-"]
        assert [r["token_id"] for r in plus] == np.argsort(-scores[f], kind="stable")[:4].tolist()
        assert [r["token_id"] for r in minus] == np.argsort(scores[f], kind="stable")[:4].tolist()
        assert [r["score"] for r in plus] == pytest.approx(np.sort(scores[f])[::-1][:4].tolist(), rel=1e-5)
        assert plus[0]["token"] == f"tok{plus[0]['token_id']}"

    cosine = cosine_table(W_dec, features, 3).to_pylist()
    unit = W_dec / np.linalg.norm(W_dec, axis=1, keepdims=True)
    for f in features:
        sims = unit @ unit[f]
        sims[f] = -np.inf
        assert [r["other"] for r in cosine if r["feature"] == f] == np.argsort(-sims, kind="stable")[:3].tolist()

    active = dense > 0
    coactivation = coactivation_table(chunks, features, N_FEATURES, active.sum(0), 3).to_pylist()
    for f in features:
        shared = (active & active[:, [f]]).sum(0)
        jaccard = shared / np.maximum((active | active[:, [f]]).sum(0), 1)
        candidates = [g for g in np.argsort(-jaccard, kind="stable") if g != f and shared[g] > 0][:3]
        got = [r for r in coactivation if r["feature"] == f]
        assert [r["other"] for r in got] == candidates and all(r["kind"] == "coactivation" for r in got)
        assert [r["score"] for r in got] == pytest.approx(jaccard[candidates].tolist())


def test_joined_labels_strip_tokens_and_show_blank_ones_as_repr():
    strings = np.array([" foo", "bar\n", "\n", "  ", "x", "", "\u00a0é\t", "ab"], dtype=object)
    offsets = np.array([0, 3, 4, 7, 8])
    expected = [", ".join(s.strip() or repr(s) for s in strings[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
    assert joined_labels(strings, offsets).to_pylist() == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(1, N_FEATURES - 1), max_size=N_FEATURES, unique=True))
def test_random_feature_shards_give_the_single_shard_tables(problem, tables, cuts):
    dense, corpus, chunks, by_feature = problem
    bounds = [0, *sorted(cuts), N_FEATURES]
    ranges = [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    pieces = [analyse_shard(by_feature, r, corpus, PARAMS) for r in ranges]
    assert {name: pa.concat_tables([p[name] for p in pieces]).to_pylist() for name in pieces[0]} == analyse(problem, 1)

    W_dec, W_U = np.random.default_rng(4).normal(size=(N_FEATURES, 6)), np.random.default_rng(5).normal(size=(6, 15))
    n_active = (dense > 0).sum(0)
    whole = range(N_FEATURES)
    for table in (lambda r: influence_table(W_dec, W_U, r, 4, lambda ids: [f"tok{i}" for i in ids]),
                  lambda r: cosine_table(W_dec, r, 3),
                  lambda r: coactivation_table(chunks, r, N_FEATURES, n_active, 3)):
        sharded, single = pa.concat_tables([table(r) for r in ranges]).to_pydict(), table(whole).to_pydict()
        # Matrix products may round differently for another block shape: scores agree to float32
        # rounding (influences are float32), everything else (which neighbours and tokens, their
        # order) exactly.
        assert sharded.pop("score") == pytest.approx(single.pop("score"), rel=1e-6, abs=1e-6)
        assert sharded == single
