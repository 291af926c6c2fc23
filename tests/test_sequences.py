import logging
import math
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest

from saeflow.chunks import read_token_rows
from saeflow.corpus import Document
from saeflow.errors import SaeflowError
from saeflow.model import load_tokenizer
from saeflow import sequences
from saeflow.sequences import tokenize_corpus

TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 7,
    "",  # no tokens: skipped (whitespace would be tokens for byte-level BPE)
    "Caf\u00e9 na\u00efve \u2014 12345 + 678 = 13023\n\nSnakemake builds only what is stale.",
    "short",
]


def run(tmp_path, tokenizer, texts=TEXTS, context_len=16, **limits):
    docs = [Document(f"doc{i}", t) for i, t in enumerate(texts)]
    paths = [tmp_path / n for n in ("tokens.parquet", "documents.parquet", "idf.parquet")]
    summary = tokenize_corpus(docs, tokenizer, context_len, *paths, **limits)
    return summary, *(pq.read_table(p).to_pylist() for p in paths)


def expected_sequences(tokenizer, texts, context_len, prefix, suffix):
    """Plain-Python oracle: (doc, [token ids]) per sequence, windows of context_len - s."""
    window = context_len - len(prefix) - len(suffix)
    out, doc = [], 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            continue
        for start in range(0, len(ids), window):
            out.append((doc, prefix + ids[start : start + window] + suffix))
        doc += 1
    return out


@pytest.fixture(params=["tiny_lm", "minilm"])
def tokenizer_and_wrap(request):
    tokenizer = load_tokenizer(request.getfixturevalue(request.param))
    if request.param == "tiny_lm":
        return tokenizer, [tokenizer.bos_token_id], []
    return tokenizer, [tokenizer.cls_token_id], [tokenizer.sep_token_id]


def test_tokens_table_matches_a_plain_python_oracle(tmp_path, tokenizer_and_wrap):
    tokenizer, prefix, suffix = tokenizer_and_wrap
    summary, tokens, documents, _ = run(tmp_path, tokenizer)
    expected = expected_sequences(tokenizer, TEXTS, 16, prefix, suffix)
    rows = [(seq, pos, doc, tid) for seq, (doc, ids) in enumerate(expected) for pos, tid in enumerate(ids)]
    assert [(r["seq"], r["pos"], r["doc"], r["token_id"]) for r in tokens] == rows
    assert all(r["token"] == tokenizer.decode([r["token_id"]]) for r in tokens)
    assert all(len(ids) <= 16 for _, ids in expected)
    assert summary["n_tokens"] == len(tokens) and summary["skipped_documents"] == 1
    assert [d["source"] for d in documents] == ["doc0", "doc2", "doc3"]
    assert [d["n_tokens"] for d in documents] == [sum(r["doc"] == d for r in tokens) for d in range(3)]
    assert [d["text"] for d in documents] == [TEXTS[0], TEXTS[2], TEXTS[3]]  # exactly as read, what spans index
    assert "labels" not in documents[0]


def test_documents_stream_in_batches(tmp_path, minilm, monkeypatch):
    monkeypatch.setattr(sequences, "_FLUSH_TOKENS", 20)  # a write every few documents
    texts = [f"Document {i}: caf\u00e9\n\n" + "word " * i for i in range(12)]
    _, tokens, documents, _ = run(tmp_path, load_tokenizer(minilm), texts=texts)
    assert pq.ParquetFile(tmp_path / "documents.parquet").metadata.num_row_groups > 1
    assert [(d["doc"], d["text"]) for d in documents] == list(enumerate(texts))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["documents.parquet", "idf.parquet", "tokens.parquet"]


def test_sequences_stay_within_one_document_and_decode_back(tmp_path, tokenizer_and_wrap):
    tokenizer, prefix, suffix = tokenizer_and_wrap
    _, tokens, _, _ = run(tmp_path, tokenizer)
    by_seq, by_doc = defaultdict(list), defaultdict(list)
    for r in tokens:
        by_seq[r["seq"]].append(r)
    for seq_rows in by_seq.values():
        assert len({r["doc"] for r in seq_rows}) == 1
        assert [r["pos"] for r in seq_rows] == list(range(len(seq_rows)))
        content = seq_rows[len(prefix) : len(seq_rows) - len(suffix)]
        by_doc[seq_rows[0]["doc"]].extend(r["token_id"] for r in content)
        assert all(r["start"] == -1 for r in seq_rows[: len(prefix)])
    kept = [t for t in TEXTS if t.strip()]
    for doc, text in enumerate(kept):
        decoded = tokenizer.decode(by_doc[doc])
        if tokenizer.cls_token_id is None:  # byte-level BPE is lossless
            assert decoded == text
        else:  # BERT lowercases, strips accents and spacing: compare the normalised characters
            normalised = tokenizer.backend_tokenizer.normalizer.normalize_str(text)
            assert "".join(decoded.split()) == "".join(normalised.split())


def test_special_marks_exactly_the_tokens_the_tokenizer_added(tmp_path, tokenizer_and_wrap):
    tokenizer, prefix, suffix = tokenizer_and_wrap
    _, tokens, _, _ = run(tmp_path, tokenizer)
    special_ids = set(tokenizer.all_special_ids)
    assert [r["special"] for r in tokens] == [r["token_id"] in special_ids for r in tokens]
    seq_length = defaultdict(int)
    for r in tokens:
        seq_length[r["seq"]] += 1
    assert [r["special"] for r in tokens] == [
        r["pos"] < len(prefix) or r["pos"] >= seq_length[r["seq"]] - len(suffix) for r in tokens]
    assert sum(r["special"] for r in tokens) == len(seq_length) * (len(prefix) + len(suffix))
    assert all(r["start"] == r["end"] == -1 for r in tokens if r["special"])
    flags = read_token_rows(tmp_path / "tokens.parquet", 3, 20, ["special"])["special"]  # as a chunk reads them
    assert flags.dtype == bool and flags.tolist() == [r["special"] for r in tokens[3:20]]


def test_a_special_token_typed_in_the_text_is_content(tmp_path, minilm):
    tokenizer = load_tokenizer(minilm)
    _, tokens, _, _ = run(tmp_path, tokenizer, texts=["before [SEP] after"])
    assert [(r["token_id"], r["special"]) for r in tokens] == [
        (tokenizer.cls_token_id, True), (tokenizer.convert_tokens_to_ids("before"), False),
        (tokenizer.sep_token_id, False), (tokenizer.convert_tokens_to_ids("after"), False),
        (tokenizer.sep_token_id, True)]


def test_idf_counts_documents_per_token(tmp_path, tokenizer_and_wrap):
    tokenizer, _, _ = tokenizer_and_wrap
    _, tokens, documents, idf = run(tmp_path, tokenizer)
    docs_with = defaultdict(set)
    for r in tokens:
        docs_with[r["token_id"]].add(r["doc"])
    assert sorted(r["token_id"] for r in idf) == sorted(docs_with)
    for r in idf:
        assert r["df"] == len(docs_with[r["token_id"]])
        assert r["idf"] == pytest.approx(math.log(len(documents) / r["df"]))
        assert r["token"] == tokenizer.decode([r["token_id"]])


def test_limits_take_whole_documents(tmp_path, tiny_lm):
    tokenizer = load_tokenizer(tiny_lm)
    full, tokens, documents, _ = run(tmp_path, tokenizer)
    first_doc = documents[0]["n_tokens"]
    summary, tokens, documents, _ = run(tmp_path, tokenizer, max_tokens=first_doc + 1)
    assert summary["n_tokens"] == first_doc and len(documents) == 1
    summary, _, documents, _ = run(tmp_path, tokenizer, max_documents=2)
    assert [d["source"] for d in documents] == ["doc0", "doc2"]


def test_labels_and_spans_columns_only_when_the_corpus_has_them(tmp_path, tiny_lm):
    tokenizer = load_tokenizer(tiny_lm)
    docs = [Document("a", "alpha beta", ["x", "y"]), Document("b", "gamma", None)]
    paths = [tmp_path / n for n in ("t.parquet", "d.parquet", "i.parquet")]
    tokenize_corpus(docs, tokenizer, 16, *paths)
    assert pq.read_table(paths[1]).column("labels").to_pylist() == [["x", "y"], []]
    assert pq.read_table(paths[1]).column_names == ["doc", "source", "n_tokens", "labels", "text"]
    span = {"start": 6, "end": 10, "label": "b"}
    tokenize_corpus([Document("a", "alpha beta", None, [span]), Document("b", "gamma")], tokenizer, 16, *paths)
    assert pq.read_table(paths[1]).column("spans").to_pylist() == [[span], []]
    assert pq.read_table(paths[1]).column_names == ["doc", "source", "n_tokens", "spans", "text"]


def test_empty_corpus_fails_and_leaves_nothing(tmp_path, tiny_lm, caplog):
    tokenizer = load_tokenizer(tiny_lm)
    with caplog.at_level(logging.WARNING), pytest.raises(SaeflowError, match="corpus.source: the corpus has no document"):
        run(tmp_path, tokenizer, texts=["", ""])
    assert "no tokens" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_context_len_must_leave_room_for_content(tmp_path, minilm):
    with pytest.raises(SaeflowError, match="model.context_len: 2 leaves no room"):
        run(tmp_path, load_tokenizer(minilm), context_len=2)
    assert list(tmp_path.iterdir()) == []


def test_token_index_is_seq_pos_order(tmp_path, minilm):
    _, tokens, _, _ = run(tmp_path, load_tokenizer(minilm), context_len=8)
    keys = np.array([(r["seq"], r["pos"]) for r in tokens])
    order = np.lexsort((keys[:, 1], keys[:, 0]))
    assert (order == np.arange(len(keys))).all()
    assert (np.unique(keys[:, 0]) == np.arange(keys[:, 0].max() + 1)).all()
