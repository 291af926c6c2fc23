"""Splits, the tokens a labelled span covers, and the concept ranking, against brute force."""

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import concept_oracle as oracle
from saeflow.concept_items import load_concept_corpus, overlapping_tokens
from saeflow.concepts import concept_table
from saeflow.errors import SaeflowError
from saeflow.splits import assign_splits, split_documents, strata


def test_splits_are_seeded_and_stratified():
    rng = np.random.default_rng(0)
    keys = [tuple(sorted(rng.choice(["a", "b", "c"], size=rng.integers(0, 3), replace=False))) for _ in range(101)]
    for fraction in (0.5, 0.3, 0.8):
        calibration = assign_splits(keys, fraction, seed=1)
        assert np.array_equal(calibration, assign_splits(keys, fraction, seed=1))
        assert abs(calibration.sum() - fraction * len(keys)) <= 1
        for key in set(keys):
            members = calibration[[k == key for k in keys]]
            assert abs(members.sum() - fraction * members.size) <= 1, key
    assert not np.array_equal(assign_splits(keys, 0.5, 1), assign_splits(keys, 0.5, 2))
    # Two documents of one stratum always land on different sides at one half.
    for seed in range(5):
        assert assign_splits([("x",), ("x",)], 0.5, seed).sum() == 1
    with pytest.raises(SaeflowError, match="concepts.calibration_fraction"):
        assign_splits(keys, 1.0, 0)


def test_strata_join_document_and_span_labels():
    labels = [["b", "a"], [], None]
    spans = [[{"start": 0, "end": 1, "label": "s"}], [{"start": 0, "end": 1, "label": "a"}] * 2, None]
    assert strata(labels, spans, 3) == [("a", "b", "s"), ("a",), ()]
    assert strata(None, None, 2) == [(), ()]


def test_split_documents_adds_the_column_and_keeps_every_row(tmp_path):
    n = 40
    labels = [["x"] if i % 3 == 0 else ["y", "x"] if i % 3 == 1 else [] for i in range(n)]
    unsplit = pa.table({"doc": pa.array(range(n), pa.int32()), "source": [f"s{i}" for i in range(n)],
                        "labels": labels, "text": [f"text {i}" for i in range(n)]})
    pq.write_table(unsplit, tmp_path / "unsplit.parquet", row_group_size=7)  # several row groups
    counts = split_documents(tmp_path / "unsplit.parquet", tmp_path / "documents.parquet", 0.25, seed=3)
    documents = pq.read_table(tmp_path / "documents.parquet")
    assert documents.drop_columns(["split"]).equals(unsplit)
    expected = assign_splits([tuple(sorted(set(l))) for l in labels], 0.25, 3)
    assert documents["split"].to_pylist() == ["calibration" if c else "test" for c in expected]
    assert counts == {"calibration": int(expected.sum()), "test": int(n - expected.sum())}
    pq.write_table(unsplit.slice(0, 1), tmp_path / "one.parquet")
    with pytest.raises(SaeflowError, match="at least two documents"):
        split_documents(tmp_path / "one.parquet", tmp_path / "none.parquet", 0.5, 0)
    assert not (tmp_path / "none.parquet").exists()


def test_overlapping_tokens_equal_a_loop_over_tokens_and_spans():
    rng = np.random.default_rng(5)
    token_doc, start, end, content = [], [], [], []
    for doc in range(6):
        position = 0
        token_doc.append(doc), start.append(-1), end.append(-1), content.append(False)  # a BOS
        for _ in range(rng.integers(1, 12)):
            width = int(rng.integers(0, 4))  # a width 0 token covers no character
            position += int(rng.integers(0, 2))  # a gap: a space no token covers
            token_doc.append(doc), start.append(position), end.append(position + width), content.append(True)
            position += width
    token_doc, start, end, content = map(np.array, (token_doc, start, end, content))
    span_doc = rng.integers(0, 6, 30)
    span_start = rng.integers(0, 20, 30)
    span_end = span_start + rng.integers(1, 6, 30)
    span_label = rng.integers(0, 3, 30)
    got = overlapping_tokens(token_doc, content, start, end, span_doc, span_start, span_end, span_label)
    expected = sorted((t, span_label[s]) for s in range(30) for t in range(len(token_doc))
                      if content[t] and token_doc[t] == span_doc[s] and start[t] < span_end[s]
                      and end[t] > span_start[s] and end[t] > start[t])
    assert sorted(zip(*got)) == expected and len(expected) > 10


def detection_rows(rng, units, labels, dense):
    """A random detection table (every unit, label, level and split) with ties and nulls."""
    rows = []
    for (unit, sign), label, level, split in itertools.product(units, labels, ("document", "token"),
                                                             ("calibration", "test")):
        f1, auroc = rng.choice([0.0, 0.25, 0.5, 1.0, np.nan]), rng.choice([0.5, 0.75, np.nan])
        row = {"label": label, "level": level, "split": split, "threshold": float(unit) + 0.5,
               "precision": rng.random(), "recall": rng.random(), "f1": f1, "auroc": auroc}
        rows.append({"dim": unit, "sign": sign, **row} if dense else {"unit": unit, **row})
    table = pa.Table.from_pylist(rows)
    nulls = {name: pa.array(table[name].to_numpy(), mask=np.isnan(table[name].to_numpy()))
             for name in ("f1", "auroc")}
    for name, column in nulls.items():
        table = table.set_column(table.column_names.index(name), name, column)
    return table.cast(table.schema.set(table.schema.get_field_index("sign"), pa.field("sign", pa.int8()))
                      if dense else table.schema)


def test_concept_ranking_equals_a_sort_of_the_calibration_scores():
    rng = np.random.default_rng(2)
    sae = detection_rows(rng, [(u, 1) for u in (3, 7, 11, 20, 41)], ["a", "b"], dense=False)
    dense = detection_rows(rng, [(d, s) for d in range(4) for s in (1, -1)], ["a", "b"], dense=True)
    table = concept_table(sae, dense, top_n=3).to_pylist()
    for source, detection in (("sae", sae.to_pylist()), ("dense", dense.to_pylist())):
        for label, level, (criterion, column) in itertools.product("ab", ("document", "token"),
                                                                    (("f1", 2), ("auroc", 3))):
            scores = {split: {(r.get("unit", r.get("dim")), r.get("sign", 1)):
                              tuple(None if r[m] is None else r[m] for m in ("precision", "recall", "f1", "auroc"))
                              for r in detection if (r["label"], r["level"], r["split"]) == (label, level, split)}
                      for split in ("calibration", "test")}
            ranked = oracle.best(scores["calibration"], column, 3)
            got = [r for r in table if (r["label"], r["level"], r["source"], r["criterion"])
                   == (label, level, source, criterion)]
            assert [(r["unit"], r["sign"]) for r in got] == ranked
            assert [r["rank"] for r in got] == list(range(1, len(ranked) + 1))
            for r in got:
                key = (r["unit"], r["sign"])
                assert r["threshold"] == r["unit"] + 0.5
                assert [r[f"test_{m}"] for m in ("precision", "recall", "f1", "auroc")] == list(scores["test"][key])
                assert [r[f"calibration_{m}"] for m in ("precision", "recall", "f1", "auroc")] == \
                    list(scores["calibration"][key])
    with pytest.raises(SaeflowError, match="top_n"):
        concept_table(sae, dense, top_n=0)


def test_load_concept_corpus_refuses_a_documents_table_that_does_not_fit(tmp_path):
    tokens = pa.table({"doc": pa.array([0, 0, 1], pa.int32()), "special": [True, False, False],
                       "start": pa.array([-1, 0, 0], pa.int32()), "end": pa.array([-1, 2, 2], pa.int32())})
    pq.write_table(tokens, tmp_path / "tokens.parquet")
    good = {"doc": pa.array([0, 1], pa.int32()), "labels": [["x"], None], "split": ["calibration", "test"]}
    pq.write_table(pa.table(good), tmp_path / "documents.parquet")
    corpus = load_concept_corpus(tmp_path / "tokens.parquet", tmp_path / "documents.parquet")
    assert corpus.doc_labels == [["x"], []] and corpus.doc_spans is None
    assert corpus.calibration_tokens().tolist() == [False, True, False]
    for bad in ({"split": ["calibration", "validation"]}, {"doc": pa.array([1, 0], pa.int32())},
                {"doc": pa.array([0], pa.int32()), "labels": [["x"]], "split": ["test"]}):
        pq.write_table(pa.table({**good, **bad}), tmp_path / "documents.parquet")
        with pytest.raises(SaeflowError, match="does not match"):
            load_concept_corpus(tmp_path / "tokens.parquet", tmp_path / "documents.parquet")
    pq.write_table(pa.table({"doc": good["doc"]}), tmp_path / "documents.parquet")
    with pytest.raises(SaeflowError, match="no `split` column"):
        load_concept_corpus(tmp_path / "tokens.parquet", tmp_path / "documents.parquet")


def test_the_shipped_example_corpus_and_config_plan_concept_detection(tmp_path):
    """tests/data/concepts.jsonl (the README's example run): labels and spans as the corpus reader
    takes them, and its config plans the split, the dense baseline and the concepts table."""
    from saeflow.corpus import iter_documents
    from workflow_runner import REPO, planned_jobs, run_snakemake

    source = REPO / "tests/data/concepts.jsonl"
    documents = list(iter_documents([str(source)], "auto", "text", "labels", "spans"))
    assert len(documents) == 64 and {label for d in documents for label in d.labels} == {"animal", "code", "food",
                                                                                          "weather"}
    spans = [(d.text[s["start"]:s["end"]], s["label"]) for d in documents for s in d.spans]
    assert len(spans) > 200 and ("fox", "animal") in spans and all(word.isalpha() for word, _ in spans)
    config = yaml.safe_load((REPO / "tests/data/concepts.yaml").read_text())
    config["corpus"]["source"] = str(source)
    result = run_snakemake(tmp_path / "work", config, "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = planned_jobs(result)
    assert (jobs["split_documents"], jobs["dense_detection"], jobs["concepts"], jobs["detection"]) == (1, 1, 1, 1)
