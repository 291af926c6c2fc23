"""Read a corpus as a stream of documents, in corpus order, from any supported source.

Sources: the built-in corpus (the topic texts of Python's own documentation, shipped with every
CPython as `pydoc_data.topics`), plain-text files (one document per file), JSONL (one document
per line) and Parquet (one document per row) with a named text field, an optional labels field
(concept labels of the whole document) and an optional spans field (labelled character spans,
each `[start, end, label]` with 0 ≤ start < end ≤ the text's length in characters).
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from saeflow.errors import SaeflowError, single_line

BUILTIN_NAME = "pydoc_topics"
FORMATS = ("text", "jsonl", "parquet")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
_PARQUET_ROWS_PER_READ = 1024


@dataclass(frozen=True)
class Document:
    source: str
    text: str
    labels: list[str] | None = None
    spans: list[dict] | None = None  # {"start", "end", "label"} each


def resolve_sources(source: str | Sequence[str]) -> list[str]:
    """Expand the `corpus.source` setting into sorted file paths ([] for the built-in corpus)."""
    if source == "builtin":
        return []
    patterns = [source] if isinstance(source, str) else list(source)
    paths: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            matches = sorted(str(p) for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else (
                [pattern] if path.is_file() else []
            )
        if not matches:
            raise SaeflowError(
                f"corpus.source: no file matches {pattern!r}; set corpus.source to an existing "
                "file, folder or glob, or to 'builtin'"
            )
        paths.extend(matches)
    return paths


def format_of(path: str, configured: str) -> str:
    if configured != "auto":
        return configured
    return _EXTENSIONS.get(Path(path).suffix.lower(), "text")


def builtin_documents() -> Iterator[Document]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield Document(source=f"builtin:{BUILTIN_NAME}/{name}", text=topics[name])


def _unreadable(path: str, err: OSError) -> SaeflowError:
    """A corpus file that vanished or cannot be opened after the workflow planned with it."""
    return SaeflowError(f"{path}: cannot read this corpus file ({err.strerror or err}); restore it or fix "
                        "corpus.source, then rerun")


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SaeflowError(
            f"{path}: not valid UTF-8 (byte {err.start}); convert the file to UTF-8 or remove it "
            "from corpus.source"
        ) from None
    except OSError as err:
        raise _unreadable(path, err) from None


def _labels(value, where: str, labels_field: str) -> list[str] | None:
    if value is None:  # the document has no labels field (distinct from an empty list)
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise SaeflowError(
            f"{where}: field {labels_field!r} must be a list of strings; fix the data or set "
            "corpus.labels_field to the right column"
        )
    return list(value)


def _spans(value, where: str, spans_field: str, text: str) -> list[dict] | None:
    if value is None:
        return None
    fix = "fix the data or set corpus.spans_field to the right column"
    if isinstance(value, (str, dict)):
        raise SaeflowError(f"{where}: field {spans_field!r} must be a list of [start, end, label]; {fix}")
    spans = []
    for span in value:
        if isinstance(span, dict):  # a Parquet struct column reads as dicts
            span = [span.get("start"), span.get("end"), span.get("label")]
        if (isinstance(span, (str, dict)) or len(span) != 3 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                       for v in span[:2]) or not isinstance(span[2], str)):
            raise SaeflowError(f"{where}: field {spans_field!r} has {span!r}, not [start, end, label] "
                               f"(two integers and a string); {fix}")
        start, end, label = span
        if not 0 <= start < end <= len(text):
            raise SaeflowError(f"{where}: span {span!r} of field {spans_field!r} is not within the text "
                               f"(0 <= start < end <= {len(text)} characters); {fix}")
        spans.append({"start": start, "end": end, "label": label})
    return spans


def not_parquet(path: str, err: Exception) -> SaeflowError:
    return SaeflowError(f"{path}: not a readable Parquet file ({single_line(err)}); rewrite it with pyarrow, or "
                        "set corpus.format to the file's real format")


def _text(value, where: str, text_field: str) -> str:
    if not isinstance(value, str):
        raise SaeflowError(
            f"{where}: no string field {text_field!r}; set corpus.text_field to the column that "
            "holds the document text"
        )
    return value


def _jsonl_documents(path: str, text_field: str, labels_field: str | None,
                     spans_field: str | None) -> Iterator[Document]:
    try:
        handle = open(path, "rb")
    except OSError as err:
        raise _unreadable(path, err) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise SaeflowError(f"{where}: not valid UTF-8; convert the file to UTF-8") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise SaeflowError(f"{where}: invalid JSON ({err.msg.removesuffix(' at')} at column {err.colno}); "
                                   "fix or remove that line") from None
            if not isinstance(record, dict):
                raise SaeflowError(f"{where}: expected a JSON object per line (e.g. {{\"{text_field}\": \"...\"}}); "
                                   "fix or remove that line")
            labels = _labels(record.get(labels_field), where, labels_field) if labels_field else None
            text = _text(record.get(text_field), where, text_field)
            spans = _spans(record.get(spans_field), where, spans_field, text) if spans_field else None
            yield Document(where, text, labels, spans)


def _parquet_documents(path: str, text_field: str, labels_field: str | None,
                       spans_field: str | None) -> Iterator[Document]:
    import pyarrow.parquet as pq  # here, not at the top: the workflow imports this module while it plans

    try:
        parquet = pq.ParquetFile(path)
    except FileNotFoundError as err:
        raise _unreadable(path, err) from None
    except Exception as err:
        raise not_parquet(path, err) from None
    names = parquet.schema_arrow.names
    if text_field not in names:
        raise SaeflowError(
            f"{path}: no column {text_field!r} (columns: {names}); set corpus.text_field"
        )
    optional = [field for field in (labels_field, spans_field) if field and field in names]
    row = 0
    for batch in parquet.iter_batches(batch_size=_PARQUET_ROWS_PER_READ, columns=[text_field, *optional]):
        texts = batch.column(text_field).to_pylist()
        labels, spans = ([None] * len(texts) if field not in optional else batch.column(field).to_pylist()
                         for field in (labels_field, spans_field))
        for text, doc_labels, doc_spans in zip(texts, labels, spans):
            where = f"{path}:{row}"
            row += 1
            text = _text(text, where, text_field)
            yield Document(
                where,
                text,
                _labels(doc_labels, where, labels_field) if labels_field else None,
                _spans(doc_spans, where, spans_field, text) if spans_field else None,
            )


def iter_documents(
    paths: list[str],
    fmt: str = "auto",
    text_field: str = "text",
    labels_field: str | None = None,
    spans_field: str | None = None,
) -> Iterator[Document]:
    """Yield documents in corpus order: files in the given (sorted) order, lines/rows in file order."""
    if not paths:
        yield from builtin_documents()
        return
    for path in paths:
        kind = format_of(path, fmt)
        if kind == "text":
            yield Document(path, _read_text(path))
        elif kind == "jsonl":
            yield from _jsonl_documents(path, text_field, labels_field, spans_field)
        else:
            yield from _parquet_documents(path, text_field, labels_field, spans_field)


def corpus_job(files: list[str], tokenizer_path, outputs: dict, settings: dict, progress=None) -> dict:
    """The corpus rule's job: tokenise the configured files (none: the built-in corpus) into
    `outputs` (tokens, documents, idf), with the rule's `settings` (format, the three field
    names, context_len, max_documents, max_tokens, prepend_bos)."""
    from saeflow import sequences  # here: the workflow imports this module while it plans
    from saeflow.model import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path)
    documents = iter_documents(files, settings["format"], settings["text_field"], settings["labels_field"],
                               settings["spans_field"])
    return sequences.tokenize_corpus(
        documents, tokenizer, settings["context_len"], outputs["tokens"], outputs["documents"], outputs["idf"],
        max_documents=settings["max_documents"], max_tokens=settings["max_tokens"],
        prepend_bos=settings["prepend_bos"], progress=progress,
    )
