"""The text of windows of corpus sequences, for people: read from the corpus tables, streaming.

A window is a run of positions of one sequence (an example around a feature's max). Its text is
rebuilt from its rows of tokens.parquet (spans, special flags, decoded tokens) and its document's
text in documents.parquet (see text_pieces.py). Both tables are streamed once, keeping only the
rows of the windows and the texts of their documents, so the cost is the examples', not the
corpus's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from saeflow import storage
from saeflow.errors import SaeflowError
from saeflow.text_pieces import text_pieces

_BATCH_ROWS = 1 << 20


@dataclass
class Ranges:
    """Disjoint runs of positions: range r is positions start[r] .. start[r] + ptr[r+1] - ptr[r] - 1
    of sequence seq[r], its rows at ptr[r] .. ptr[r+1] - 1 of arrays laid out back to back.
    Ordered by (seq, start)."""

    seq: np.ndarray  # int64
    start: np.ndarray  # int64
    ptr: np.ndarray  # int64, n_ranges + 1


@dataclass
class SpanRows:
    """Rows of tokens.parquet, back to back in the layout of some Ranges."""

    doc: np.ndarray  # int64
    token: pa.Array  # strings, decoded as in tokens.parquet
    special: np.ndarray  # bool
    start: np.ndarray  # int64, character span in the document's text; -1 where none
    end: np.ndarray  # int64

    def take(self, at: np.ndarray) -> "SpanRows":
        return SpanRows(self.doc[at], self.token.take(pa.array(at)), self.special[at], self.start[at], self.end[at])


def merge_ranges(seq: np.ndarray, start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, Ranges]:
    """Merge windows into maximal runs of overlapping or touching windows of one sequence.

    Returns each window's range and the ranges; window w starts start[w] - ranges.start[range[w]]
    positions into its range.
    """
    seq, start, length = (np.asarray(a, dtype=np.int64) for a in (seq, start, length))
    n = seq.size
    if not n:
        empty = np.zeros(0, dtype=np.int64)
        return empty, Ranges(empty, empty, np.zeros(1, dtype=np.int64))
    end = start + length
    order = np.lexsort((start, seq))
    # One key line for all sequences: seq * span + position never mixes two sequences.
    span = int(end.max()) + 1
    start_key = seq[order] * span + start[order]
    reach = np.maximum.accumulate(seq[order] * span + end[order])
    opens = np.ones(n, dtype=bool)
    opens[1:] = start_key[1:] > reach[:-1]
    first = np.flatnonzero(opens)
    last = np.append(first[1:] - 1, n - 1)
    range_seq = seq[order][first]
    range_start = start[order][first]
    range_len = reach[last] - range_seq * span - range_start
    window_range = np.empty(n, dtype=np.int64)
    window_range[order] = np.cumsum(opens) - 1
    return window_range, Ranges(range_seq, range_start, np.concatenate([[0], np.cumsum(range_len)]))


def _batches(path, columns: list[str], batch_rows: int):
    """Record batches of a corpus table's columns, one clear error where it or a column is missing."""
    with storage.open_parquet(path, columns) as table, storage.parquet_errors(path):
        yield from table.iter_batches(batch_size=batch_rows, columns=columns)


def read_span_rows(tokens_path, ranges: Ranges) -> SpanRows:
    """The tokens.parquet rows of every range, streaming the table once."""
    n = int(ranges.ptr[-1])
    doc, start, end = (np.full(n, -1, dtype=np.int64) for _ in range(3))
    special = np.zeros(n, dtype=bool)
    found = np.zeros(n, dtype=bool)
    slots, tokens = [], []
    # (seq, pos) as one sorted int64 key, so a binary search finds each row's range.
    range_key = (ranges.seq << 32) + ranges.start
    range_stop = range_key + np.diff(ranges.ptr)
    columns = ["seq", "pos", "doc", "token", "special", "start", "end"]
    for batch in _batches(tokens_path, columns, _BATCH_ROWS):
        key = (batch["seq"].to_numpy().astype(np.int64) << 32) + batch["pos"].to_numpy()
        at = np.searchsorted(range_key, key, side="right") - 1
        inside = at >= 0
        inside[inside] = key[inside] < range_stop[at[inside]]
        if not inside.any():
            continue
        slot = ranges.ptr[at[inside]] + (key[inside] - range_key[at[inside]])
        doc[slot] = batch["doc"].to_numpy()[inside]
        special[slot] = batch["special"].to_numpy(zero_copy_only=False)[inside]
        start[slot] = batch["start"].to_numpy()[inside]
        end[slot] = batch["end"].to_numpy()[inside]
        found[slot] = True
        slots.append(slot)
        tokens.append(batch["token"].filter(pa.array(inside)))
    if not found.all():
        missing = int(np.flatnonzero(~found)[0])
        r = int(np.searchsorted(ranges.ptr, missing, side="right") - 1)
        raise SaeflowError(f"{tokens_path}: no token at position {ranges.start[r] + missing - ranges.ptr[r]} of "
                           f"sequence {ranges.seq[r]}; the analysis is from another corpus: rerun the workflow")
    order = np.argsort(np.concatenate(slots)) if slots else np.zeros(0, dtype=np.int64)
    token = pa.concat_arrays(tokens).take(pa.array(order)) if tokens else pa.array([], pa.string())
    return SpanRows(doc, token, special, start, end)


def read_texts(documents_path, docs: np.ndarray) -> dict[int, str]:
    """The text of each document in `docs`, streaming documents.parquet once."""
    wanted = np.unique(docs)
    texts = {}
    for batch in _batches(documents_path, ["doc", "text"], 1024):
        doc = batch["doc"].to_numpy()
        keep = np.flatnonzero(np.isin(doc, wanted))
        texts.update(zip(doc[keep].tolist(), batch["text"].take(pa.array(keep)).to_pylist()))
    if missing := set(wanted.tolist()) - texts.keys():
        raise SaeflowError(f"{documents_path}: no document {min(missing)}; the corpus tables disagree: "
                           "rerun the workflow")
    return texts


def range_pieces(rows: SpanRows, texts: dict[int, str], ptr: np.ndarray, rows_per_part: int = 1 << 16,
                 pieces_of=text_pieces) -> pa.Array:
    """The display pieces of every run rows[ptr[r]:ptr[r+1]] (ptr ascending), back to back; each
    run is rebuilt on its own by `pieces_of` (text_pieces: as a window, its first token showing
    the text from its own start; own_pieces: each token as if it opened a window).

    Runs are taken in parts of about `rows_per_part` rows, each part's columns converted to Python
    once, and its pieces kept as Arrow strings, far smaller than Python's.
    """
    parts, bounds = [], ptr.tolist()
    first, n_runs = 0, len(bounds) - 1
    while first < n_runs:
        stop = max(first + 1, int(np.searchsorted(ptr, bounds[first] + rows_per_part, side="right")) - 1)
        base = bounds[first]
        rows_of = slice(base, bounds[stop])
        token = rows.token[rows_of].to_pylist()
        doc, special, start, end = (a[rows_of].tolist() for a in (rows.doc, rows.special, rows.start, rows.end))
        pieces: list[str] = []
        for lo, hi in zip(bounds[first:stop], bounds[first + 1 : stop + 1]):
            lo, hi = lo - base, hi - base
            if hi > lo:
                pieces += pieces_of(texts[doc[lo]], token[lo:hi], special[lo:hi], start[lo:hi], end[lo:hi])
        parts.append(pa.array(pieces, pa.string()))
        first = stop
    return pa.concat_arrays([pa.array([], pa.string()), *parts])


def window_pieces(tokens_path, documents_path, seq, start, length) -> tuple[pa.Array, np.ndarray]:
    """The display pieces of windows (position start[w] .. start[w] + length[w] - 1 of sequence
    seq[w]) and whether each token is special, back to back in window order."""
    length = np.asarray(length, dtype=np.int64)
    window_range, ranges = merge_ranges(seq, start, length)
    rows = read_span_rows(tokens_path, ranges)
    # Each window's rows within its range's.
    first = ranges.ptr[window_range] + np.asarray(start, dtype=np.int64) - ranges.start[window_range]
    at = np.repeat(first - np.concatenate([[0], np.cumsum(length)[:-1]]), length) + np.arange(int(length.sum()))
    windows = rows.take(at)
    ptr = np.concatenate([[0], np.cumsum(length)])
    return range_pieces(windows, read_texts(documents_path, windows.doc), ptr), windows.special
