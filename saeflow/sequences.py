"""Cut documents into model-sized sequences and write the corpus tables.

Writes `tokens.parquet` (one row per token) and the documents table (one row per document, with
the text its tokens' spans index; the split job adds each document's split to make
`documents.parquet`), both streamed, and `idf.parquet`.
A document's content tokens are split into consecutive windows of `context_len - s` tokens (s =
special tokens the tokenizer adds to one input), each wrapped in those special tokens: nothing
is truncated and no sequence spans two documents.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from saeflow import storage
from saeflow.corpus import Document
from saeflow.errors import SaeflowError
from saeflow.model import special_token_wrapping

log = logging.getLogger(__name__)

TOKENS_SCHEMA = pa.schema(
    [
        ("seq", pa.int32()),
        ("pos", pa.int32()),
        ("doc", pa.int32()),
        ("token_id", pa.int32()),
        ("token", pa.string()),
        ("special", pa.bool_()),
        ("start", pa.int32()),
        ("end", pa.int32()),
    ]
)
SPAN = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("label", pa.string())])
# The corpus job's documents table with every column; `labels` and `spans` are dropped where no
# document has them.
DOCUMENTS_SCHEMA = pa.schema(
    [
        ("doc", pa.int32()),
        ("source", pa.string()),
        ("n_tokens", pa.int32()),
        ("labels", pa.list_(pa.string())),
        ("spans", pa.list_(SPAN)),
        ("text", pa.string()),
    ]
)
IDF_SCHEMA = pa.schema(
    [("token_id", pa.int32()), ("token", pa.string()), ("df", pa.int64()), ("idf", pa.float64())]
)
_FLUSH_TOKENS = 1 << 18  # token rows buffered before a Parquet write


@dataclass
class _TokenBuffer:
    """Columns of token rows waiting to be written."""

    columns: dict[str, list] = field(default_factory=lambda: {n: [] for n in TOKENS_SCHEMA.names})
    n_rows: int = 0

    def add(self, **columns: np.ndarray) -> None:
        for name, values in columns.items():
            self.columns[name].append(values)
        self.n_rows += len(columns["seq"])

    def drain(self) -> dict[str, np.ndarray]:
        joined = {name: np.concatenate(parts) for name, parts in self.columns.items()}
        self.columns = {n: [] for n in TOKENS_SCHEMA.names}
        self.n_rows = 0
        return joined


class _DocumentWriter:
    """The documents table, streamed. Whether it gets `labels` and `spans` columns is known only
    once every document is read (some corpora label only some documents), so rows first go to a
    scratch file beside it, then are copied into place, one batch at a time, with the right columns."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._scratch_dir = tempfile.TemporaryDirectory(prefix=f".{self.path.name}.scratch-", dir=self.path.parent)
        self._scratch_path = Path(self._scratch_dir.name) / self.path.name
        self._scratch = pq.ParquetWriter(self._scratch_path, DOCUMENTS_SCHEMA)
        self._rows: dict[str, list] = {name: [] for name in DOCUMENTS_SCHEMA.names}
        self.n_rows = 0
        self.present = {"labels": False, "spans": False}

    def add(self, source: str, n_tokens: int, labels: list[str] | None, spans: list[dict] | None, text: str) -> None:
        # A document without labels (spans) in a labelled (spanned) corpus gets [].
        self.present["labels"] |= labels is not None
        self.present["spans"] |= spans is not None
        for name, value in zip(DOCUMENTS_SCHEMA.names, (self.n_rows, source, n_tokens, labels or [], spans or [], text)):
            self._rows[name].append(value)
        self.n_rows += 1

    def flush(self) -> None:
        if self._rows["doc"]:
            self._scratch.write_table(pa.table(self._rows, schema=DOCUMENTS_SCHEMA))
            self._rows = {name: [] for name in DOCUMENTS_SCHEMA.names}

    def finish(self) -> None:
        self.flush()
        self._scratch.close()
        schema = DOCUMENTS_SCHEMA
        for name, present in self.present.items():
            if not present:
                schema = schema.remove(schema.get_field_index(name))
        with pq.ParquetFile(self._scratch_path) as scratch, storage.ParquetStream(self.path, schema) as out:
            for group in range(scratch.num_row_groups):
                rows = scratch.read_row_group(group, columns=schema.names)
                out.write({name: rows[name] for name in schema.names})

    def __enter__(self) -> "_DocumentWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._scratch.close()  # a no-op once finished
        self._scratch_dir.cleanup()


class TokenDecoder:
    """`tokenizer.decode([id])` with default options, memoised per id (the vocabulary is small)."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self._cache: dict[int, str] = {}

    def __call__(self, token_ids: np.ndarray) -> list[str]:
        out = []
        for token_id in token_ids.tolist():
            text = self._cache.get(token_id)
            if text is None:
                text = self._cache[token_id] = self._tokenizer.decode([token_id])
            out.append(text)
        return out


def content_tokens(tokenizer, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids of a document without special tokens, and each token's character span."""
    encoded = tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=tokenizer.is_fast, verbose=False
    )
    ids = np.asarray(encoded["input_ids"], dtype=np.int32)
    if tokenizer.is_fast:
        spans = np.asarray(encoded["offset_mapping"], dtype=np.int32).reshape(-1, 2)
        return ids, spans[:, 0], spans[:, 1]
    missing = np.full(len(ids), -1, dtype=np.int32)
    return ids, missing, missing


def window_length(tokenizer, context_len: int, prepend_bos: bool = False) -> int:
    prefix, suffix = special_token_wrapping(tokenizer, prepend_bos)
    length = context_len - len(prefix) - len(suffix)
    if length < 1:
        raise SaeflowError(
            f"model.context_len: {context_len} leaves no room for content tokens (the tokenizer "
            f"adds {len(prefix) + len(suffix)} special tokens per sequence); set it above "
            f"{len(prefix) + len(suffix)}"
        )
    return length


def tokenize_corpus(
    documents: Iterable[Document],
    tokenizer,
    context_len: int,
    tokens_path,
    documents_path,
    idf_path,
    max_documents: int | None = None,
    max_tokens: int | None = None,
    prepend_bos: bool = False,
    progress=None,
) -> dict:
    """Tokenise `documents` and write the three corpus tables; return a summary.

    `max_tokens` caps the token rows: documents are taken whole, in order, while they fit.
    `prepend_bos` starts every window with the BOS where the tokenizer puts nothing before it.
    """
    prefix, suffix = (np.asarray(ids, dtype=np.int32) for ids in special_token_wrapping(tokenizer, prepend_bos))
    window = window_length(tokenizer, context_len, prepend_bos)
    special_span = np.full(len(prefix) + len(suffix), -1, dtype=np.int32)
    decode = TokenDecoder(tokenizer)
    document_frequency = np.zeros(len(tokenizer), dtype=np.int64)
    buffer = _TokenBuffer()
    n_seqs = n_tokens = skipped = 0

    with storage.ParquetStream(tokens_path, TOKENS_SCHEMA) as tokens_out, _DocumentWriter(documents_path) as doc_rows:
        for document in documents:
            if max_documents is not None and doc_rows.n_rows >= max_documents:
                break
            ids, starts, ends = content_tokens(tokenizer, document.text)
            if len(ids) == 0:
                log.warning("%s: no tokens (empty or whitespace); skipped", document.source)
                skipped += 1
                continue
            cuts = np.arange(window, len(ids), window)
            pieces = list(zip(np.split(ids, cuts), np.split(starts, cuts), np.split(ends, cuts)))
            doc_tokens = len(ids) + len(pieces) * (len(prefix) + len(suffix))
            if max_tokens is not None and n_tokens + doc_tokens > max_tokens:
                log.info("corpus.max_tokens=%d reached; stopping before %s", max_tokens, document.source)
                break
            doc = doc_rows.n_rows
            for piece_ids, piece_starts, piece_ends in pieces:
                seq_ids = np.concatenate([prefix, piece_ids, suffix])
                n = len(seq_ids)
                # Only the wrapping is special: a content token with a special id (a "[SEP]" in
                # the text) is the document's own.
                special = np.zeros(n, dtype=bool)
                special[: len(prefix)] = special[n - len(suffix) :] = True
                buffer.add(
                    seq=np.full(n, n_seqs, dtype=np.int32),
                    pos=np.arange(n, dtype=np.int32),
                    doc=np.full(n, doc, dtype=np.int32),
                    token_id=seq_ids,
                    token=decode(seq_ids),
                    special=special,
                    start=np.concatenate([special_span[: len(prefix)], piece_starts, special_span[len(prefix):]]),
                    end=np.concatenate([special_span[: len(prefix)], piece_ends, special_span[len(prefix):]]),
                )
                n_seqs += 1
            document_frequency[np.unique(np.concatenate([prefix, ids, suffix]))] += 1
            n_tokens += doc_tokens
            doc_rows.add(document.source, doc_tokens, document.labels, document.spans, document.text)
            if buffer.n_rows >= _FLUSH_TOKENS:
                tokens_out.write(buffer.drain())
                doc_rows.flush()
            if progress is not None:
                progress.update(1)
        if n_tokens == 0:
            raise SaeflowError(
                "corpus.source: the corpus has no document with tokens"
                + (f" ({skipped} empty documents skipped)" if skipped else "")
                + "; point corpus.source at non-empty text (or raise corpus.max_tokens)"
            )
        if buffer.n_rows:
            tokens_out.write(buffer.drain())
        doc_rows.finish()
        _write_idf(idf_path, document_frequency, doc_rows.n_rows, decode)

    log.info("corpus: %d documents, %d sequences, %d tokens (%d empty documents skipped)",
             doc_rows.n_rows, n_seqs, n_tokens, skipped)
    return {"n_documents": doc_rows.n_rows, "n_sequences": n_seqs, "n_tokens": n_tokens,
            "skipped_documents": skipped}


def _write_idf(path, document_frequency: np.ndarray, n_documents: int, decode: TokenDecoder) -> None:
    token_ids = np.flatnonzero(document_frequency).astype(np.int32)
    df = document_frequency[token_ids]
    storage.write_parquet(
        path,
        {"token_id": token_ids, "token": decode(token_ids), "df": df, "idf": np.log(n_documents / df)},
        IDF_SCHEMA,
    )
