"""What concept detection scores: documents and tokens of each split, and the labels they carry.

Detection is scored on two levels: `document` (a unit's max over a document's content tokens,
against the document's labels) and `token` (its value at each content token, against the labels
of the character spans the token overlaps). Each (level, split) is a set of items numbered
0..n_items−1 in token order, and `item_of_token` maps every token to its item, or −1 where the
token is not scored there: special tokens (BOS, CLS, ...: no text of the document; BOS carries
the attention sink's huge values) and the other split's documents.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from saeflow import storage
from saeflow.errors import SaeflowError
from saeflow.splits import SPLITS

LEVELS = ("document", "token")


@dataclass(frozen=True)
class ScoredItems:
    level: str
    split: str
    item_of_token: np.ndarray  # int64 per token; its scored items ascend with the token index
    n_items: int
    member_item: np.ndarray  # int64: item member_item[i] carries label member_label[i]
    member_label: np.ndarray  # int64, an index into names
    names: list[str]  # the level's labels over the whole corpus (both splits), sorted


@dataclass(frozen=True)
class ConceptCorpus:
    """Per token its document, whether it is content (not special) and its character span; per
    document its split and, where the corpus has them, its labels and labelled spans."""

    token_doc: np.ndarray
    content: np.ndarray  # bool
    token_start: np.ndarray
    token_end: np.ndarray
    doc_calibration: np.ndarray  # bool: the document is in the calibration split
    doc_labels: list | None
    doc_spans: list | None

    def calibration_tokens(self) -> np.ndarray:
        """Where thresholds and pruning statistics come from: content tokens of calibration documents."""
        return self.content & self.doc_calibration[self.token_doc]

    def scored_items(self) -> Iterator[ScoredItems]:
        """Every (level, split) the corpus can score: documents where it has labels, tokens where
        it has spans; one at a time (each holds arrays the size of the token table)."""
        for split in SPLITS:
            in_split = self.content & (self.doc_calibration[self.token_doc] == (split == "calibration"))
            if self.doc_labels is not None:
                yield self._document_items(split, in_split)
            if self.doc_spans is not None:
                yield self._token_items(split, in_split)

    @cached_property
    def _document_members(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(doc, label) of every document label, and the label names: the same for both splits."""
        names = sorted({label for labels in self.doc_labels for label in labels})
        member_doc = np.repeat(np.arange(len(self.doc_labels)), [len(labels) for labels in self.doc_labels])
        member_label = np.searchsorted(names, [label for labels in self.doc_labels for label in labels])
        return member_doc, np.asarray(member_label, dtype=np.int64), names

    @cached_property
    def _token_members(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(token, label) of every token a labelled span overlaps, and the span label names:
        found once, then each split keeps its own tokens."""
        names = sorted({span["label"] for spans in self.doc_spans for span in spans})
        span_doc = np.repeat(np.arange(len(self.doc_spans)), [len(spans) for spans in self.doc_spans])
        flat = [span for spans in self.doc_spans for span in spans]
        token, label = overlapping_tokens(
            self.token_doc, self.content, self.token_start, self.token_end, span_doc,
            np.array([span["start"] for span in flat], dtype=np.int64),
            np.array([span["end"] for span in flat], dtype=np.int64),
            np.searchsorted(names, [span["label"] for span in flat]).astype(np.int64))
        return token, label, names

    def _document_items(self, split: str, in_split: np.ndarray) -> ScoredItems:
        docs = np.unique(self.token_doc[in_split])
        doc_item = np.full(len(self.doc_calibration), -1, dtype=np.int64)
        doc_item[docs] = np.arange(docs.size)
        item_of_token = np.where(in_split, doc_item[self.token_doc], -1)
        member_doc, member_label, names = self._document_members
        member_item = doc_item[member_doc]
        keep = member_item >= 0
        return ScoredItems("document", split, item_of_token, int(docs.size), member_item[keep], member_label[keep],
                           names)

    def _token_items(self, split: str, in_split: np.ndarray) -> ScoredItems:
        item_of_token = np.where(in_split, np.cumsum(in_split) - 1, -1)
        token, label, names = self._token_members
        member_item = item_of_token[token]
        keep = member_item >= 0
        return ScoredItems("token", split, item_of_token, int(in_split.sum()), member_item[keep], label[keep], names)


def overlapping_tokens(token_doc, content, token_start, token_end, span_doc, span_start, span_end, span_label):
    """(token, label) for every content token whose characters overlap a labelled span of its
    document ([start, end) ranges that share a character). Tokens without a span (start = end,
    or −1 where the tokenizer gives no offsets) overlap nothing."""
    tokens = np.flatnonzero(content & (token_end > token_start))
    if not tokens.size or not span_doc.size:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # Content tokens come in text order within a document, so (doc, start) and (doc, end) both
    # ascend over them, and a span's tokens are one run found by two binary searches.
    width = int(max(token_end[tokens].max(), span_end.max())) + 1
    doc = token_doc[tokens].astype(np.int64)
    first = np.searchsorted(doc * width + token_end[tokens], span_doc * width + span_start, side="right")
    stop = np.searchsorted(doc * width + token_start[tokens], span_doc * width + span_end, side="left")
    count = np.maximum(stop - first, 0)
    run = np.repeat(np.arange(span_doc.size), count)
    offset = np.arange(run.size) - np.repeat(np.cumsum(count) - count, count)
    return tokens[first[run] + offset], span_label[run]


def load_concept_corpus(tokens_path, documents_path) -> ConceptCorpus:
    tokens = storage.read_parquet_columns(tokens_path, ["doc", "special", "start", "end"])
    names = storage.open_parquet(documents_path).schema_arrow.names
    if "split" not in names:
        raise SaeflowError(f"{documents_path}: no `split` column; delete it and rerun the workflow")
    columns = ["doc", "split", *(name for name in ("labels", "spans") if name in names)]
    documents = storage.read_parquet_table(documents_path, columns)
    split = documents.column("split").to_numpy(zero_copy_only=False)
    if not np.array_equal(documents.column("doc").to_numpy(), np.arange(documents.num_rows)) \
            or not np.isin(split, SPLITS).all() or (tokens["doc"] >= documents.num_rows).any():
        raise SaeflowError(f"{documents_path} does not match {tokens_path} (documents 0.. in order, each split one "
                           f"of {list(SPLITS)}, every token's document present); delete both and rerun the workflow")
    optional = {name: [value or [] for value in documents.column(name).to_pylist()] if name in columns else None
                for name in ("labels", "spans")}
    return ConceptCorpus(tokens["doc"].astype(np.int64), ~tokens["special"], tokens["start"].astype(np.int64),
                         tokens["end"].astype(np.int64), split == "calibration", optional["labels"], optional["spans"])
