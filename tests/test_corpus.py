import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from saeflow.corpus import iter_documents, resolve_sources
from saeflow.errors import SaeflowError


def test_builtin_corpus_is_pydoc_topics_in_sorted_order():
    from pydoc_data.topics import topics

    docs = list(iter_documents([]))
    assert [d.text for d in docs] == [topics[name] for name in sorted(topics)]
    assert all(d.source.startswith("builtin:") for d in docs)


def test_text_files_one_document_each_in_sorted_path_order(tmp_path):
    for name, text in [("b.txt", "second"), ("a.txt", "first"), ("sub/c.txt", "third")]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    paths = resolve_sources(str(tmp_path / "**" / "*.txt"))
    docs = list(iter_documents(paths))
    assert [d.text for d in docs] == ["first", "second", "third"]
    assert docs[0].source == str(tmp_path / "a.txt")
    assert [d.text for d in iter_documents(resolve_sources(str(tmp_path)))] == ["first", "second", "third"]


def test_jsonl_sources_count_lines_from_one_and_keep_labels(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"body": "alpha", "tags": ["x"]}, {"body": "beta"}, {"body": "gamma", "tags": []}]
    path.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]) + "\n")
    docs = list(iter_documents([str(path)], "auto", "body", "tags"))
    assert [(d.source, d.text, d.labels) for d in docs] == [
        (f"{path}:1", "alpha", ["x"]), (f"{path}:2", "beta", None), (f"{path}:4", "gamma", [])
    ]


def test_parquet_rows_count_from_zero(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": ["one", "two"], "labels": [["a", "b"], None]}), path)
    docs = list(iter_documents([str(path)], "parquet", "text", "labels"))
    assert [(d.source, d.text, d.labels) for d in docs] == [(f"{path}:0", "one", ["a", "b"]), (f"{path}:1", "two", None)]
    assert list(iter_documents([str(path)], "auto", "text", "labels")) == docs  # .parquet picked by extension


def test_an_explicit_format_overrides_the_extension(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text('{"text": "not parsed"}\n')
    assert [d.text for d in iter_documents([str(path)], "text")] == ['{"text": "not parsed"}\n']


@pytest.mark.parametrize("source", ["does/not/exist.txt", "nowhere/*.jsonl"])
def test_missing_source_names_the_key_and_pattern(source):
    with pytest.raises(SaeflowError, match=r"corpus\.source.*" + source.replace("*", r"\*")):
        resolve_sources(source)


def test_non_utf8_file_is_named(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(SaeflowError, match=r"latin1\.txt: not valid UTF-8"):
        list(iter_documents([str(path)]))


def test_jsonl_missing_text_field_names_line_and_key(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"content": "x"}) + "\n")
    with pytest.raises(SaeflowError, match=r"c\.jsonl:1: no string field 'text'.*corpus\.text_field"):
        list(iter_documents([str(path)]))


def test_spans_are_read_from_jsonl_and_parquet_and_checked_against_the_text(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"text": "a fox ran", "spans": [[2, 5, "animal"], [0, 9, "all"]]}) + "\n"
                    + json.dumps({"text": "none"}) + "\n")
    docs = list(iter_documents([str(path)], "auto", "text", None, "spans"))
    assert docs[0].spans == [{"start": 2, "end": 5, "label": "animal"}, {"start": 0, "end": 9, "label": "all"}]
    assert docs[1].spans is None and docs[0].labels is None
    struct = pa.list_(pa.struct([("start", pa.int32()), ("end", pa.int32()), ("label", pa.string())]))
    pq.write_table(pa.table({"text": ["é fox"], "marks": pa.array([[{"start": 2, "end": 5, "label": "a"}]], struct)}),
                   tmp_path / "t.parquet")
    (doc,) = iter_documents([str(tmp_path / "t.parquet")], "auto", "text", None, "marks")
    assert doc.spans == [{"start": 2, "end": 5, "label": "a"}] and doc.text[2:5] == "fox"


@pytest.mark.parametrize("spans, message", [
    ("fox", "must be a list of \\[start, end, label\\]"),
    ([[0, 3]], "not \\[start, end, label\\]"),
    ([[0, 3, 7]], "not \\[start, end, label\\]"),
    ([[0.5, 3, "a"]], "not \\[start, end, label\\]"),
    ([[3, 3, "a"]], "not within the text"),
    ([[2, 10, "a"]], "not within the text"),
    ([[-1, 2, "a"]], "not within the text"),
])
def test_bad_spans_name_the_line_and_the_key(tmp_path, spans, message):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"text": "a fox ran"}) + "\n" + json.dumps({"text": "a fox", "spans": spans}) + "\n")
    with pytest.raises(SaeflowError, match=f"{path}:2: .*{message}.*corpus.spans_field"):
        list(iter_documents([str(path)], "auto", "text", None, "spans"))
