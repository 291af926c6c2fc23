import dataclasses
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from saeflow import dense_baseline
from saeflow.analysis.detection import detection_scores, item_maxima
from saeflow.analysis.entries import Entries
from saeflow.analysis.percentiles import percentiles
from saeflow.concept_items import ConceptCorpus, load_concept_corpus
from saeflow.dense_baseline import DENSE_DETECTION_SCHEMA, dense_detection, dense_detection_job
from saeflow.errors import SaeflowError
from saeflow.sequences import SPAN
from saeflow.storage import ZarrChunkWriter

D = 5
Q = 70  # not a round rank of the calibration tokens: the threshold interpolates
# Per document, the content tokens of each of its sequences; every sequence starts with a BOS.
# Documents 1 and 5 have a BOS in their middle; document 8 has no content token at all.
LAYOUT = [[4], [3, 2], [5], [2], [3], [4, 3], [1], [3], [0]]
CALIBRATION = [True, False, True, False, True, False, True, False, False]
# "c" is only on a calibration document, "all" on every one (AUROC undefined), "d" only on a
# document without content (no positive item anywhere); "b" is repeated on document 2.
LABELS = [["a", "all"], ["a", "b", "all"], ["b", "b", "all", "a"], ["all"], ["c", "all"], ["all", "a"], ["all"],
          ["b", "all"], ["d", "all"]]
# Content token k of a document covers characters [3k, 3k + 3), except document 2's token 2 (no
# characters). "x" on document 1 is repeated; "z" is only on a calibration document.
SPANS = [[{"start": 2, "end": 4, "label": "x"}, {"start": 5, "end": 9, "label": "y"}],
         [{"start": 0, "end": 3, "label": "x"}, {"start": 0, "end": 3, "label": "x"},
          {"start": 9, "end": 15, "label": "y"}],
         [{"start": 5, "end": 7, "label": "z"}, {"start": 6, "end": 6, "label": "y"}], [], [],
         [{"start": 3, "end": 12, "label": "x"}], [], [{"start": 0, "end": 9, "label": "y"}], []]
CHUNK_STARTS = [0, 7, 23]


def synthetic_corpus(labels=LABELS, spans=SPANS, calibration=CALIBRATION) -> ConceptCorpus:
    doc, content, start, end = [], [], [], []
    for d, lengths in enumerate(LAYOUT):
        k = 0
        for length in lengths:
            doc.append(d), content.append(False), start.append(-1), end.append(-1)
            for _ in range(length):
                empty = d == 2 and k == 2
                doc.append(d), content.append(True), start.append(3 * k), end.append(3 * k + (0 if empty else 3))
                k += 1
    return ConceptCorpus(np.array(doc, dtype=np.int64), np.array(content), np.array(start, dtype=np.int64),
                         np.array(end, dtype=np.int64), np.array(calibration), labels, spans)


def synthetic_values(corpus, dtype, seed=0, special_scale=1000.0):
    """Values as a float16 or float32 chunk stores them; special tokens hold huge values of either sign."""
    rng = np.random.default_rng(seed)
    shape = (len(corpus.token_doc), D)
    # float16: quarter steps, so item scores tie with each other and with thresholds.
    values = rng.integers(-8, 9, size=shape) / 4 if dtype == "float16" else rng.normal(size=shape)
    # Dimension 4 sits far below its calibration threshold on test documents: (4, +1) detects none there.
    values[~corpus.doc_calibration[corpus.token_doc], 4] -= 10
    special = ~corpus.content
    values[special] = rng.choice([-1.0, 1.0], size=(special.sum(), D)) * special_scale
    return values.astype(dtype)


def write_chunks(folder, values, starts=CHUNK_STARTS, drop_last_row=()):
    paths = []
    for index, (start, stop) in enumerate(zip(starts, [*starts[1:], len(values)])):
        rows = values[start:stop - 1] if index in drop_last_row else values[start:stop]
        paths.append(folder / f"chunk-{index:04d}.zarr")
        with ZarrChunkWriter(paths[-1], {"model": "tiny", "hook": "hidden_states.1", "token_start": start,
                                         "dtype": str(values.dtype)}) as store:
            store.create("acts", rows.shape, rows.dtype, rows_per_chunk=4)[:] = rows
    return paths


# ---------------------------------------------------------------- the oracle: plain loops


def oracle_items(corpus):
    """(level, split, items as lists of tokens, each item's set of labels, the level's label names)."""
    doc, content = corpus.token_doc, corpus.content
    sets = []
    for split in ("calibration", "test"):
        docs = [d for d in range(len(corpus.doc_calibration)) if corpus.doc_calibration[d] == (split == "calibration")]
        if corpus.doc_labels is not None:
            items = [[t for t in range(len(doc)) if doc[t] == d and content[t]] for d in docs]
            labels = [set(corpus.doc_labels[d]) for d, tokens in zip(docs, items) if tokens]
            names = sorted({label for labels_ in corpus.doc_labels for label in labels_})
            sets.append(("document", split, [tokens for tokens in items if tokens], labels, names))
        if corpus.doc_spans is not None:
            tokens = [t for t in range(len(doc)) if content[t] and doc[t] in docs]
            labels = [{span["label"] for span in corpus.doc_spans[doc[t]]
                       if corpus.token_end[t] > corpus.token_start[t]
                       and max(corpus.token_start[t], span["start"]) < min(corpus.token_end[t], span["end"])}
                      for t in tokens]
            names = sorted({span["label"] for spans in corpus.doc_spans for span in spans})
            sets.append(("token", split, [[t] for t in tokens], labels, names))
    return sets


def oracle_rows(values, corpus, q=Q):
    values = np.asarray(values, dtype=np.float32)
    calibration = [t for t in range(len(values)) if corpus.content[t] and corpus.doc_calibration[corpus.token_doc[t]]]
    rows = []
    for dim in range(values.shape[1]):
        for sign in (1, -1):
            v = sign * values[:, dim]
            # A list q: the float64 interpolation the SAE side's percentiles reproduce.
            threshold = float(np.percentile(v[calibration], [q])[0]) if calibration else None
            for level, split, items, item_labels, names in oracle_items(corpus):
                scores = [max(v[t] for t in tokens) for tokens in items]
                detected = [threshold is not None and score >= threshold for score in scores]
                for label in names:
                    positive = [label in labels for labels in item_labels]
                    tp = sum(p and d for p, d in zip(positive, detected))
                    precision = tp / sum(detected) if sum(detected) else None
                    recall = tp / sum(positive) if sum(positive) else None
                    if precision is None or recall is None:
                        f1 = None
                    else:
                        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
                    rows.append({"dim": dim, "sign": sign, "label": label, "level": level, "split": split,
                                 "threshold": threshold, "precision": precision, "recall": recall, "f1": f1,
                                 "auroc": pairwise_auroc(scores, positive)})
    return sorted(rows, key=lambda row: (row["dim"], -row["sign"], row["label"], row["level"], row["split"]))


def pairwise_auroc(scores, positive):
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    if not pos or not neg:
        return None
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def assert_table_matches(table, expected):
    assert table.schema.equals(DENSE_DETECTION_SCHEMA)
    got = table.to_pylist()
    assert len(got) == len(expected)
    for row, want in zip(got, expected):
        assert {k: v for k, v in row.items() if k != "auroc"} == {k: v for k, v in want.items() if k != "auroc"}
        assert (row["auroc"] is None) == (want["auroc"] is None), row
        if want["auroc"] is not None:
            assert row["auroc"] == pytest.approx(want["auroc"], rel=1e-12)


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_matches_the_oracle(tmp_path, dtype):
    corpus = synthetic_corpus()
    values = synthetic_values(corpus, dtype)
    table = dense_detection(write_chunks(tmp_path, values), corpus, Q, memory_mb=1000)
    expected = oracle_rows(values, corpus)
    assert_table_matches(table, expected)
    # Every null shows: nothing detected, no positive item, a label on every item, a label absent from test.
    for column in ("precision", "recall", "f1", "auroc"):
        assert table.column(column).null_count > 0
    assert table.column("f1").to_pylist().count(0.0) > 0


def test_blocks_give_the_same_table(tmp_path, monkeypatch):
    corpus = synthetic_corpus()
    values = synthetic_values(corpus, "float16")
    paths = write_chunks(tmp_path, values)
    whole = dense_detection(paths, corpus, Q, memory_mb=1000)
    assert dense_detection(paths, corpus, Q, memory_mb=0).equals(whole)  # blocks of one dimension
    monkeypatch.setattr(dense_baseline, "block_size", lambda d, n_tokens, memory_mb: 2)  # 2, 2, 1
    assert dense_detection(paths, corpus, Q, memory_mb=1000).equals(whole)


def test_block_size_follows_the_budget():
    assert dense_baseline.block_size(512, 1000, 1) == 2**20 // (1000 * 16)
    assert dense_baseline.block_size(512, 10, 1000) == 512
    assert dense_baseline.block_size(512, 10**9, 1) == 1


def test_special_tokens_never_reach_an_item_score(tmp_path):
    corpus = synthetic_corpus()
    tables = [dense_detection(write_chunks(tmp_path / str(scale), synthetic_values(corpus, "float32", 0, scale)),
                              corpus, Q, memory_mb=1000) for scale in (1000.0, -5000.0, 0.0)]
    assert tables[0].equals(tables[1]) and tables[0].equals(tables[2])
    assert np.abs(tables[0].column("threshold").to_numpy()).max() < 10


def test_a_split_without_items(tmp_path):
    corpus = synthetic_corpus(calibration=[True] * len(LAYOUT))
    values = synthetic_values(corpus, "float32")
    table = dense_detection(write_chunks(tmp_path, values), corpus, Q, memory_mb=1000)
    assert_table_matches(table, oracle_rows(values, corpus))
    test_rows = table.filter(pa.compute.equal(table.column("split"), "test"))
    assert test_rows.num_rows and test_rows.column("precision").null_count == test_rows.num_rows


def test_no_labels_nor_spans_give_an_empty_table(tmp_path):
    corpus = synthetic_corpus(labels=None, spans=None)
    table = dense_detection(write_chunks(tmp_path, synthetic_values(corpus, "float32")), corpus, Q, memory_mb=1000)
    assert table.num_rows == 0 and table.schema.equals(DENSE_DETECTION_SCHEMA)


def test_positive_units_match_the_sae_side(tmp_path):
    """With values all positive, unit (d, +1) is an SAE feature that fires everywhere: the SAE
    side's percentiles, item maxima and detection scores must give the same rows."""
    corpus = synthetic_corpus()
    rng = np.random.default_rng(1)
    values = (rng.integers(1, 12, size=(len(corpus.token_doc), D)) / 4).astype(np.float32)
    table = dense_detection(write_chunks(tmp_path, values), corpus, Q, memory_mb=1000)
    token = np.repeat(np.arange(len(values)), D)
    entries = Entries(token, np.tile(np.arange(D), len(values)), values.ravel(), 0, D)
    calibration = corpus.calibration_tokens()[token]
    calibration_entries = dataclasses.replace(entries, token=token[calibration], feature=entries.feature[calibration],
                                              value=entries.value[calibration])
    thresholds = percentiles(calibration_entries, [Q])[:, 0]
    for items in corpus.scored_items():
        sae = detection_scores(item_maxima(entries, items.item_of_token), thresholds, items.member_item,
                               items.member_label, items.n_items, len(items.names))
        mask = pa.compute.and_(pa.compute.equal(table.column("sign"), 1), pa.compute.and_(
            pa.compute.equal(table.column("level"), items.level), pa.compute.equal(table.column("split"), items.split)))
        rows = table.filter(mask)
        assert rows.column("threshold").to_numpy().tolist() == np.repeat(thresholds, len(items.names)).tolist()
        for name in ("precision", "recall", "f1", "auroc"):
            np.testing.assert_allclose(rows.column(name).to_numpy(zero_copy_only=False), getattr(sae, name),
                                       rtol=1e-12, equal_nan=True)


def test_a_non_finite_chunk_names_itself(tmp_path):
    corpus = synthetic_corpus()
    values = synthetic_values(corpus, "float16")
    values[CHUNK_STARTS[1] + 3, 2] = np.nan
    paths = write_chunks(tmp_path, values)
    with pytest.raises(SaeflowError, match=re.escape(str(paths[1]))):
        dense_detection(paths, corpus, Q, memory_mb=1000)


def test_missing_rows_name_the_chunk(tmp_path):
    corpus = synthetic_corpus()
    values = synthetic_values(corpus, "float32")
    paths = write_chunks(tmp_path / "middle", values, drop_last_row=(1,))
    with pytest.raises(SaeflowError, match=re.escape(str(paths[2])) + ".*delete"):
        dense_detection(paths, corpus, Q, memory_mb=1000)
    paths = write_chunks(tmp_path / "last", values, drop_last_row=(2,))
    with pytest.raises(SaeflowError, match=re.escape(str(tmp_path / "last")) + ".*delete"):
        dense_detection(paths, corpus, Q, memory_mb=1000)
    with pytest.raises(SaeflowError, match="no activation chunks"):
        dense_detection([], corpus, Q, memory_mb=1000)


def test_the_job_reads_the_corpus_tables(tmp_path):
    corpus = synthetic_corpus()
    tokens_path, documents_path = tmp_path / "tokens.parquet", tmp_path / "documents.parquet"
    pq.write_table(pa.table({"doc": pa.array(corpus.token_doc, pa.int32()), "special": pa.array(~corpus.content),
                             "start": pa.array(corpus.token_start, pa.int32()),
                             "end": pa.array(corpus.token_end, pa.int32())}), tokens_path)
    splits = ["calibration" if c else "test" for c in CALIBRATION]
    pq.write_table(pa.table({"doc": pa.array(range(len(LAYOUT)), pa.int32()), "split": splits,
                             "labels": pa.array(LABELS, pa.list_(pa.string())),
                             "spans": pa.array(SPANS, pa.list_(SPAN))}), documents_path)
    loaded = load_concept_corpus(tokens_path, documents_path)
    assert loaded.doc_labels == LABELS and (loaded.content == corpus.content).all()

    values = synthetic_values(corpus, "float16")
    out_path = tmp_path / "out" / "dense_detection.parquet"
    dense_detection_job(write_chunks(tmp_path / "acts", values), tokens_path, documents_path, out_path, Q, 1000)
    assert_table_matches(pq.read_table(out_path), oracle_rows(values, corpus))
