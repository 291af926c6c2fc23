import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr
from safetensors import safe_open

from saeflow import doc_vectors, label_vectors
from saeflow.activations import iter_chunk_rows
from saeflow.errors import SaeflowError
from saeflow.sequences import DOCUMENTS_SCHEMA, TOKENS_SCHEMA
from saeflow.storage import ZarrChunkWriter, read_safetensors, write_safetensors

D = 6
HOOK_SPEC = "hidden_states.1"
# Per document, the content tokens of each of its sequences. Document 1 spans chunks 0-2 (chunk 1
# lies wholly inside it), document 6 spans chunks 3 and 4.
LAYOUT = [[3], [4, 2, 5], [1], [2, 3], [6], [2], [3, 1, 2, 4]]
CHUNK_FIRST_SEQS = [0, 2, 3, 5, 10]
# "all" is on every document; "b" appears twice on document 2.
LABELS = [["a", "all"], ["a", "b", "all"], ["b", "b", "all"], ["all"], ["all", "c"], ["all"], ["a", "c", "all"]]


def build_corpus(tmp_path, labels=LABELS, dtype="float16"):
    """tokens.parquet, documents.parquet and the hook's activation chunks; each sequence is
    [BOS] content, and every other one ends with [EOS]. Special rows hold large values, so
    pooling one of them by mistake shows."""
    rng = np.random.default_rng(0)
    rows = {name: [] for name in TOKENS_SCHEMA.names}
    seq = 0
    for doc, lengths in enumerate(LAYOUT):
        for length in lengths:
            special = [True] + [False] * length + ([True] if seq % 2 == 0 else [])
            for pos, is_special in enumerate(special):
                values = (seq, pos, doc, rng.integers(100), "t", is_special, -1, -1)
                for name, value in zip(TOKENS_SCHEMA.names, values):
                    rows[name].append(value)
            seq += 1
    tokens = pa.table(rows, schema=TOKENS_SCHEMA)
    tokens_path = tmp_path / "tokens.parquet"
    pq.write_table(tokens, tokens_path, row_group_size=7)

    columns = {"doc": list(range(len(LAYOUT))), "source": [f"d{i}" for i in range(len(LAYOUT))],
               "n_tokens": [0] * len(LAYOUT), "labels": labels, "text": ["x"] * len(LAYOUT)}
    schema = DOCUMENTS_SCHEMA.remove(DOCUMENTS_SCHEMA.get_field_index("spans"))
    if labels is None:
        schema = schema.remove(schema.get_field_index("labels"))
        del columns["labels"]
    documents_path = tmp_path / "documents.parquet"
    pq.write_table(pa.table(columns, schema=schema), documents_path)

    special = np.asarray(rows["special"])
    acts = rng.normal(size=(len(special), D)) + 0.5
    acts[special] += 100.0
    acts = acts.astype(dtype)
    seqs = np.asarray(rows["seq"])
    starts = [int(np.flatnonzero(seqs == s)[0]) for s in CHUNK_FIRST_SEQS] + [len(seqs)]
    chunk_paths = []
    for index, (start, stop) in enumerate(zip(starts, starts[1:])):
        chunk_paths.append(tmp_path / "acts" / f"chunk-{index:04d}.zarr")
        write_acts(chunk_paths[-1], acts[start:stop], start)
    return tokens_path, documents_path, chunk_paths, acts.astype(np.float64), tokens.to_pydict()


def write_acts(path, acts, token_start):
    with ZarrChunkWriter(path, {"token_start": token_start, "hook": HOOK_SPEC, "model": "tiny",
                                "dtype": str(acts.dtype)}) as store:
        store.create("acts", acts.shape, acts.dtype, rows_per_chunk=5)[:] = acts


def oracle_vectors(acts, tokens, pool):
    doc, special = np.asarray(tokens["doc"]), np.asarray(tokens["special"])
    vectors, counts = [], []
    for d in range(len(LAYOUT)):
        rows = np.flatnonzero((doc == d) & ~special)
        vectors.append(acts[rows].mean(axis=0) if pool == "mean" else acts[rows[-1]])
        counts.append(len(rows))
    return np.array(vectors), np.array(counts)


def cosine(a, b):
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 4 activation rows, 2 vectors per Zarr chunk, 3 rows per read-back block, 3
    documents per label batch: every boundary falls inside the corpus."""
    monkeypatch.setattr(doc_vectors, "iter_chunk_rows", lambda path: iter_chunk_rows(path, rows_per_read=4))
    monkeypatch.setattr(doc_vectors, "_STORE_CHUNK_BYTES", 2 * 4 * D)
    monkeypatch.setattr(doc_vectors, "_READ_BLOCK_BYTES", 3 * 8 * D)
    monkeypatch.setattr(label_vectors, "_DOCUMENT_BATCH", 3)
    monkeypatch.setattr(label_vectors, "_BLOCK_BYTES", 4 * 8 * D)


def run_doc_vectors(tmp_path, corpus, pool):
    tokens_path, documents_path, chunk_paths, _, _ = corpus
    names = ("doc_vectors.zarr", "doc_mean.safetensors", "doc_vectors.parquet")
    out = {name: tmp_path / "out" / name for name in names}
    doc_vectors.document_vectors(chunk_paths, tokens_path, documents_path, pool, *out.values())
    return out


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_document_vectors_match_a_numpy_oracle(tmp_path, small_blocks, pool):
    corpus = build_corpus(tmp_path)
    _, _, _, acts, tokens = corpus
    out = run_doc_vectors(tmp_path, corpus, pool)
    expected, counts = oracle_vectors(acts, tokens, pool)

    group = zarr.open_group(str(out["doc_vectors.zarr"]), mode="r")
    assert group["vectors"].dtype == np.float32 and group["vectors"].shape == (len(LAYOUT), D)
    np.testing.assert_allclose(group["vectors"][:], expected, rtol=1e-6, atol=1e-6)
    assert dict(group.attrs) == {"pool": pool, "hook": HOOK_SPEC, "model": "tiny", "n_documents": len(LAYOUT)}

    mean = expected.mean(axis=0)
    mean_of_normalized = (expected / np.linalg.norm(expected, axis=1, keepdims=True)).mean(axis=0)
    stored = read_safetensors(out["doc_mean.safetensors"])
    assert {name: array.dtype for name, array in stored.items()} == dict.fromkeys(
        ["mean", "mean_normalized", "mean_of_normalized"], np.float32)
    np.testing.assert_allclose(stored["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(stored["mean_normalized"], mean / np.linalg.norm(mean), rtol=1e-6)
    np.testing.assert_allclose(stored["mean_of_normalized"], mean_of_normalized, rtol=1e-6)

    table = pq.read_table(out["doc_vectors.parquet"])
    assert table.schema == doc_vectors.DOC_VECTOR_SCHEMA
    columns = table.to_pydict()
    assert columns["doc"] == list(range(len(LAYOUT)))
    assert columns["n_pooled"] == (counts.tolist() if pool == "mean" else [1] * len(LAYOUT))
    assert counts.tolist() == [sum(lengths) for lengths in LAYOUT]
    np.testing.assert_allclose(columns["norm"], np.linalg.norm(expected, axis=1), rtol=1e-6)
    np.testing.assert_allclose(columns["cosine_to_mean"], [cosine(v, mean) for v in expected], rtol=1e-5)
    np.testing.assert_allclose(columns["cosine_to_mean_of_normalized"],
                               [cosine(v, mean_of_normalized) for v in expected], rtol=1e-5)


def test_last_pool_takes_the_last_content_token_not_a_trailing_special_one(tmp_path):
    corpus = build_corpus(tmp_path, dtype="float32")
    _, _, _, acts, tokens = corpus
    out = run_doc_vectors(tmp_path, corpus, "last")
    vectors = zarr.open_group(str(out["doc_vectors.zarr"]), mode="r")["vectors"][:]
    # Document 6's last sequence (seq 12, even) ends with an EOS: its last content row is the one before.
    last_row = len(tokens["doc"]) - 2
    assert tokens["special"][-1] and not tokens["special"][last_row]
    np.testing.assert_array_equal(vectors[6], acts[last_row].astype(np.float32))


def test_label_vectors_are_mean_differences_and_a_label_on_every_document_is_left_out(tmp_path, small_blocks, caplog):
    corpus = build_corpus(tmp_path)
    _, documents_path, _, acts, tokens = corpus
    out = run_doc_vectors(tmp_path, corpus, "mean")
    vectors_path, table_path = tmp_path / "label_vectors.safetensors", tmp_path / "label_vectors.parquet"
    with caplog.at_level(logging.WARNING):
        kept = label_vectors.label_vectors(out["doc_vectors.zarr"], documents_path, vectors_path, table_path)
    assert kept == ["a", "b", "c"]
    assert "all" in caplog.text

    expected_docs, _ = oracle_vectors(acts, tokens, "mean")
    expected, n_with = [], []
    for label in kept:
        has = np.array([label in labels for labels in LABELS])
        expected.append(expected_docs[has].mean(axis=0) - expected_docs[~has].mean(axis=0))
        n_with.append(int(has.sum()))
    expected = np.array(expected)

    stored, labels = label_vectors.read_label_vectors(vectors_path)
    assert labels == kept and stored.dtype == np.float32
    np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-6)
    table = pq.read_table(table_path)
    assert table.schema == label_vectors.LABEL_VECTOR_SCHEMA
    columns = table.to_pydict()
    assert columns["label"] == kept and columns["row"] == [0, 1, 2]
    assert columns["n_with"] == n_with == [3, 2, 2]  # "b" twice on document 2 counts once
    assert columns["n_without"] == [len(LAYOUT) - n for n in n_with]
    np.testing.assert_allclose(columns["norm"], np.linalg.norm(expected, axis=1), rtol=1e-5)
    with safe_open(str(vectors_path), framework="numpy") as handle:
        assert handle.metadata()["pool"] == "mean"
        assert json.loads(handle.metadata()["labels"]) == kept


def test_only_labels_on_every_document_give_no_vectors(tmp_path):
    corpus = build_corpus(tmp_path, labels=[["x"]] * len(LAYOUT))
    out = run_doc_vectors(tmp_path, corpus, "mean")
    vectors_path, table_path = tmp_path / "lv.safetensors", tmp_path / "lv.parquet"
    assert label_vectors.label_vectors(out["doc_vectors.zarr"], corpus[1], vectors_path, table_path) == []
    stored, labels = label_vectors.read_label_vectors(vectors_path)
    assert stored.shape == (0, D) and labels == []
    assert pq.read_table(table_path).num_rows == 0


def test_label_alignment_cosines_and_ranks(tmp_path, small_blocks):
    rng = np.random.default_rng(1)
    n_features = 11
    W_dec = rng.normal(size=(n_features, D)).astype(np.float32)
    W_dec[4] = 0.0  # a zero decoder row: no cosine, ranked last
    W_dec[7] = W_dec[2]  # an exact tie: the smaller id ranks first
    weights_path = tmp_path / "sae_weights.safetensors"
    write_safetensors(weights_path, {"W_dec": W_dec, "W_enc": W_dec.T.copy()}, {})
    vectors = rng.normal(size=(2, D)).astype(np.float32)
    vectors_path = tmp_path / "label_vectors.safetensors"
    write_safetensors(vectors_path, {"vectors": vectors}, {"labels": json.dumps(["p", "q"]), "pool": "mean"})
    out_path = tmp_path / "label_alignment.parquet"
    label_vectors.label_alignment(weights_path, vectors_path, out_path)

    table = pq.read_table(out_path)
    assert table.schema == label_vectors.ALIGNMENT_SCHEMA
    rows = table.to_pylist()
    assert len(rows) == 2 * n_features
    for column, label in enumerate(["p", "q"]):
        got = {row["feature"]: row for row in rows if row["label"] == label}
        assert sorted(got) == list(range(n_features))
        expected = {f: cosine(W_dec[f].astype(np.float64), vectors[column].astype(np.float64))
                    for f in range(n_features) if f != 4}
        order = sorted(expected, key=lambda f: (-expected[f], f)) + [4]  # undefined last
        assert got[4]["cosine"] is None and got[4]["rank"] == n_features - 1
        for f, value in expected.items():
            assert got[f]["cosine"] == pytest.approx(value, rel=1e-6)
            assert got[f]["rank"] == order.index(f)
        assert got[2]["rank"] + 1 == got[7]["rank"]


def test_label_alignment_rejects_a_width_mismatch(tmp_path):
    weights_path = tmp_path / "sae_weights.safetensors"
    write_safetensors(weights_path, {"W_dec": np.ones((3, D + 1), np.float32)}, {})
    vectors_path = tmp_path / "label_vectors.safetensors"
    write_safetensors(vectors_path, {"vectors": np.ones((1, D), np.float32)}, {"labels": '["p"]', "pool": "mean"})
    with pytest.raises(SaeflowError, match="sae_weights.safetensors"):
        label_vectors.label_alignment(weights_path, vectors_path, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_a_short_chunk_is_an_error_naming_the_files(tmp_path):
    tokens_path, documents_path, chunk_paths, acts, _ = build_corpus(tmp_path)
    last = zarr.open_group(str(chunk_paths[-1]), mode="r")
    start, rows = last.attrs["token_start"], last["acts"][:]
    write_acts(chunk_paths[-1], rows[:-1], start)  # one row missing at the end
    with pytest.raises(SaeflowError, match=r"tokens\.parquet: \d+ tokens, but the 5 activation chunks hold"):
        run_doc_vectors(tmp_path, (tokens_path, documents_path, chunk_paths, acts, None), "mean")
    assert not (tmp_path / "out" / "doc_vectors.zarr").exists()


@pytest.fixture
def short_tokens(tmp_path):
    """A tokens.parquet with no rows."""
    pq.write_table(pa.table({name: pa.array([], type) for name, type in zip(TOKENS_SCHEMA.names, TOKENS_SCHEMA.types)}),
                   tmp_path / "short.parquet")


def test_a_chunk_out_of_place_is_an_error_naming_it(tmp_path, short_tokens):
    tokens_path, documents_path, chunk_paths, acts, _ = build_corpus(tmp_path)
    middle = zarr.open_group(str(chunk_paths[2]), mode="r")
    write_acts(chunk_paths[2], middle["acts"][:], middle.attrs["token_start"] + 1)
    with pytest.raises(SaeflowError, match="chunk-0002.zarr: starts at token"):
        run_doc_vectors(tmp_path, (tokens_path, documents_path, chunk_paths, acts, None), "mean")
    with pytest.raises(SaeflowError, match="chunk-0000.zarr: rows for tokens"):
        run_doc_vectors(tmp_path, (tmp_path / "short.parquet", documents_path, chunk_paths, acts, None), "mean")


def test_bad_pool_and_unlabelled_corpus(tmp_path):
    corpus = build_corpus(tmp_path, labels=None)
    with pytest.raises(SaeflowError, match="vectors.pool"):
        run_doc_vectors(tmp_path, corpus, "max")
    out = run_doc_vectors(tmp_path, corpus, "mean")
    with pytest.raises(SaeflowError, match="documents.parquet: no `labels` column"):
        label_vectors.label_vectors(out["doc_vectors.zarr"], corpus[1], tmp_path / "a", tmp_path / "b")
