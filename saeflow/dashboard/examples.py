"""Example windows stored once per corpus position: segments of sequences plus window references.

Top and quantile examples are windows of corpus sequences, and windows of different features
(and SAEs) overlap a lot, so writing each window's text would store the same text many times.
Instead, overlapping windows of a sequence merge into a segment whose tokens are stored once, as
ids into one string table, and a window becomes (segment, offset, length). The string table is
ordered by frequency, so common pieces get small ids, which compress best.

A token shows its piece of the document's text (see saeflow/text_pieces.py), rebuilt from the
corpus tables: the text from the previous token's end to its own, so the pieces of a window
join into the text as written. A segment stores those pieces; a window's first token shows the
text from its own start instead (without the whitespace before it), stored per window.

A window's place in its sequence follows from the contract: it holds pos − context ..
pos + context clipped to the sequence, and pos is the first token where the feature reaches the
window's max, so the window starts at pos − (first argmax of its acts).

Token activations are stored as 1..255, the fraction of their example's max (kept as float16),
0 only where the feature is off: a strip's colours need no more, the set of tokens where the
feature fires stays exact, and it halves the largest part of the file against float16.

An ablated top example (analysis/ablation.parquet: a row per token of the same window) gets its
tokens' loss and loss effect as arrays aligned with the window, so the page joins them to the
example's tokens by index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from saeflow.analysis.groups import rank_in_runs, run_starts
from saeflow.dashboard.blob import compact_floats, smallest_uint
from saeflow.dashboard.tables import ByFeature, Strings, check_ids
from saeflow.errors import SaeflowError
from saeflow.text_pieces import own_pieces
from saeflow.window_text import merge_ranges, range_pieces, read_span_rows, read_texts

# Distinct peak tokens kept per feature, for search by token.
PEAK_TOKENS = 8


@dataclass
class Windows:
    """One SAE's examples of one kind, rows in display order (feature, strongest band, rank)."""

    feature: np.ndarray  # int64
    rank: np.ndarray  # int64, the table's rank (within the band for quantile examples)
    band: np.ndarray | None  # int64, quantile examples only
    seq: np.ndarray  # int64
    start: np.ndarray  # int64, sequence position of the window's first token
    length: np.ndarray  # int64
    max_index: np.ndarray  # int64, the max token's index within the window
    tokens: pa.Array  # strings, all windows back to back
    acts: np.ndarray  # float32, aligned with tokens

    @property
    def first(self) -> np.ndarray:
        """Index into tokens/acts of each window's first token."""
        return np.cumsum(self.length) - self.length

    @property
    def activation(self) -> np.ndarray:
        """Each window's max, at max_index."""
        return self.acts[self.first + self.max_index]


@dataclass
class ExampleCorpus:
    """Every token any window shows, once: segment s is tokens[ptr[s]:ptr[s+1]] of sequence seq[s]."""

    strings: pa.Array  # the string table, most frequent first
    seq: np.ndarray
    start: np.ndarray
    ptr: np.ndarray
    tokens: np.ndarray  # ids into strings of each token's piece
    special: np.ndarray  # bool, per token: BOS, CLS, ... (shown as its token string, not text)
    wordpiece: bool  # the decoded tokens mark word-inner pieces with "##" (WordPiece)


@dataclass
class Placement:
    """Where each window of one Windows lies in the ExampleCorpus."""

    segment: np.ndarray
    offset: np.ndarray
    first_piece: np.ndarray  # id of the piece each window's first token shows
    tokens: np.ndarray  # the ids of the pieces the windows show, back to back


def read_windows(table: pa.Table, path, n_features: int) -> Windows:
    keys = [("feature", "ascending"), ("rank", "ascending")]
    if "band" in table.column_names:
        keys.insert(1, ("band", "descending"))
    table = table.sort_by(keys)
    length = pc.fill_null(pc.list_value_length(table["tokens"]), 0).to_numpy().astype(np.int64)
    n_acts = pc.fill_null(pc.list_value_length(table["acts"]), 0).to_numpy().astype(np.int64)
    if not np.array_equal(length, n_acts) or (length == 0).any():
        raise SaeflowError(f"{path}: every example needs as many acts as tokens, at least one; rebuild the analysis")
    feature = check_ids(table["feature"].to_numpy().astype(np.int64), n_features, str(path))
    acts = pc.list_flatten(table["acts"]).to_numpy().astype(np.float64)
    max_index = _first_argmax(acts, length)
    start = table["pos"].to_numpy().astype(np.int64) - max_index
    if (start < 0).any():
        raise SaeflowError(f"{path}: an example's pos is before its window's max token; rebuild the analysis")
    return Windows(
        feature=feature,
        rank=table["rank"].to_numpy().astype(np.int64),
        band=table["band"].to_numpy().astype(np.int64) if "band" in table.column_names else None,
        seq=table["seq"].to_numpy().astype(np.int64),
        start=start,
        length=length,
        max_index=max_index,
        tokens=pc.list_flatten(table["tokens"]).combine_chunks().cast(pa.string()),
        acts=acts.astype(np.float32),
    )


def _first_argmax(values: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Per window (consecutive runs of `length`), the index of its first maximum."""
    if not length.size:
        return np.zeros(0, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(length)[:-1]])
    peak = np.repeat(np.maximum.reduceat(values, offsets), length)
    local = np.arange(values.size) - np.repeat(offsets, length)
    return np.minimum.reduceat(np.where(values == peak, local, values.size), offsets)


def pack_example_corpus(all_windows: list[Windows], tokens_path,
                        documents_path) -> tuple[ExampleCorpus, list[Placement]]:
    """Merge the windows of every SAE and kind into segments, their pieces rebuilt from the corpus
    tables (tokens.parquet, documents.parquet); place each window in them."""
    seq = np.concatenate([w.seq for w in all_windows])
    start = np.concatenate([w.start for w in all_windows])
    length = np.concatenate([w.length for w in all_windows])
    segment, segments = merge_ranges(seq, start, length)
    rows = read_span_rows(tokens_path, segments)
    offset = start - segments.start[segment]
    window_at = np.concatenate([[0], np.cumsum(length)[:-1]])
    first_slot = segments.ptr[segment] + offset
    slot = np.repeat(first_slot - window_at, length) + np.arange(int(length.sum()))
    _check_tokens(pa.concat_arrays([w.tokens for w in all_windows]), rows.token.take(pa.array(slot)), seq, window_at)

    texts = read_texts(documents_path, rows.doc)
    pieces = range_pieces(rows, texts, segments.ptr)
    # A window's first token shows its own text, without the whitespace before it.
    firsts = range_pieces(rows, texts, segments.ptr, pieces_of=own_pieces).take(pa.array(first_slot))
    encoded = pa.concat_arrays([pieces, firsts]).dictionary_encode()
    ids = encoded.indices.to_numpy().astype(np.int64)
    stored, first = ids[: len(pieces)], ids[len(pieces) :]

    # Frequency order: the ids of common pieces become small, so their high bytes are zeros.
    order = np.argsort(-np.bincount(ids, minlength=len(encoded.dictionary)), kind="stable")
    new_id = np.empty_like(order)
    new_id[order] = np.arange(order.size)
    stored, first = new_id[stored], new_id[first]
    corpus = ExampleCorpus(encoded.dictionary.take(pa.array(order)), segments.seq, segments.start, segments.ptr,
                           stored, rows.special, _marks_wordpiece(rows, texts))

    shown = stored[slot]
    shown[window_at] = first
    placements, at, tok_at = [], 0, 0
    for w in all_windows:
        n, n_tok = w.seq.size, int(w.length.sum())
        placements.append(Placement(segment[at : at + n], offset[at : at + n], first[at : at + n],
                                    shown[tok_at : tok_at + n_tok]))
        at, tok_at = at + n, tok_at + n_tok
    return corpus, placements


def _check_tokens(shown: pa.Array, corpus: pa.Array, seq: np.ndarray, window_at: np.ndarray) -> None:
    """The examples' tokens must be the corpus's at their positions (else they are of another run)."""
    differ = np.flatnonzero(pc.not_equal(shown.cast(pa.string()), corpus).to_numpy(zero_copy_only=False))
    if differ.size:
        where = seq[np.searchsorted(window_at, differ[0], side="right") - 1]
        raise SaeflowError(f"examples disagree with corpus/tokens.parquet on the tokens of sequence {where}; "
                           "rebuild the analysis")


def _marks_wordpiece(rows, texts: dict[int, str]) -> bool:
    """Whether decoded tokens carry WordPiece's "##": some content token decodes to "##…" where
    its text does not start with "##". The page then drops the mark from vocabulary tokens."""
    marked = pc.starts_with(rows.token, "##").to_numpy(zero_copy_only=False) & ~rows.special & (rows.start >= 0)
    return any(not texts[doc].startswith("##", start)
               for doc, start in zip(rows.doc[marked].tolist(), rows.start[marked].tolist()))


def example_tables(prefix: str, w: Windows, placed: Placement, n_features: int) -> list[ByFeature]:
    """The examples' rows (where each window lies, its max) and their quantised token activations."""
    columns = {
        f"{prefix}.segment": smallest_uint(placed.segment),
        f"{prefix}.offset": smallest_uint(placed.offset),
        f"{prefix}.first_piece": smallest_uint(placed.first_piece),
        f"{prefix}.length": smallest_uint(w.length),
        f"{prefix}.max_index": smallest_uint(w.max_index),
        f"{prefix}.activation": compact_floats(w.activation),
    }
    if w.band is not None:
        columns[f"{prefix}.band"] = smallest_uint(w.band)
    rows = ByFeature.from_sorted(prefix, w.feature, n_features, prefix, columns)
    per_feature = np.bincount(w.feature, weights=w.length, minlength=n_features).astype(np.int64)
    acts = ByFeature(f"{prefix}_acts", np.concatenate([[0], np.cumsum(per_feature)]),
                     {f"{prefix}.acts": quantise(w.acts, np.repeat(w.activation, w.length))})
    return [rows, acts]


def quantise(acts: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """acts as 1..255 parts of their window's peak (255 = the peak), 0 where not firing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.clip(np.rint(255 * acts / peak), 1, 255)
    return np.where((acts > 0) & (peak > 0), q, 0).astype(np.uint8)


def peak_tokens(top: Windows, placed: Placement, n_features: int, strings: Strings, n: int = PEAK_TOKENS) -> ByFeature:
    """Per feature, the n tokens it peaks on most often in its top examples (ties: the token of
    the stronger example first), as the text of their pieces without surrounding whitespace (for
    search: " fox" and "\nfox" are one token)."""
    pieces = strings.table.take(pa.array(placed.tokens[top.first + top.max_index]))
    trimmed = pc.utf8_trim_whitespace(pieces)
    token = strings.ids(pc.if_else(pc.equal(trimmed, ""), pieces, trimmed))  # a whitespace token stays itself
    order = np.lexsort((np.arange(token.size), token, top.feature))  # rows come strongest first
    feature, token, strongest = top.feature[order], token[order], order
    starts = run_starts(feature, token)
    count = np.diff(np.append(np.flatnonzero(starts), token.size))
    feature, token, strongest = feature[starts], token[starts], strongest[starts]
    ranked = np.lexsort((strongest, -count, feature))
    keep = ranked[rank_in_runs(run_starts(feature[ranked])) < n]
    return ByFeature.from_sorted("peak", feature[keep], n_features, "top_examples",
                                 {"peak.token": smallest_uint(token[keep])})


def ablation_tables(table: pa.Table, top: Windows, n_features: int, source: str) -> list[ByFeature]:
    """analysis/ablation.parquet joined to the top examples it ablated, by (feature, rank): per
    ablated example its index among the feature's top examples (`abl.example`), and per token of
    its window the `loss` and `loss_effect` (NaN where null: position 0, or a window position the
    table has no row for), in window order."""
    table = table.sort_by([("feature", "ascending"), ("rank", "ascending"), ("pos", "ascending")])
    feature = check_ids(table["feature"].to_numpy().astype(np.int64), n_features, source)
    rank, seq, pos = (table[c].to_numpy().astype(np.int64) for c in ("rank", "seq", "pos"))
    starts = run_starts(feature, rank)
    group = np.cumsum(starts) - 1
    # Top rows are sorted by (feature, rank): find each ablated example's row by that key.
    width = int(max(top.rank.max(initial=0), rank.max(initial=0))) + 1
    top_key, key = top.feature * width + top.rank, feature[starts] * width + rank[starts]
    at = np.searchsorted(top_key, key)
    found = at < top_key.size
    found[found] = top_key[at[found]] == key[found]
    if not found.all():
        i = int(np.flatnonzero(~found)[0])
        raise SaeflowError(f"{source}: feature {feature[starts][i]} has no top example of rank {rank[starts][i]}; "
                           "the ablation is of another analysis: rebuild it")
    row = at[group]
    local = pos - top.start[row]
    if (seq != top.seq[row]).any() or (local < 0).any() or (local >= top.length[row]).any():
        i = int(np.flatnonzero((seq != top.seq[row]) | (local < 0) | (local >= top.length[row]))[0])
        raise SaeflowError(f"{source}: the row of feature {feature[i]}, rank {rank[i]} at seq {seq[i]}, pos {pos[i]} "
                           "lies outside that top example's window; the ablation is of another analysis: rebuild it")
    length = top.length[at]
    slot = (np.cumsum(length) - length)[group] + local
    if np.unique(slot).size != slot.size:
        raise SaeflowError(f"{source}: a (feature, rank, pos) has more than one row")
    per_token = {}
    for column, name in (("loss", "abl.loss"), ("loss_effect", "abl.effect")):
        values = np.full(int(length.sum()), np.nan, dtype=np.float32)
        values[slot] = table[column].cast(pa.float32()).to_numpy()
        per_token[name] = values  # float32: effects are small and shown to 3 digits, float16 would not
    ex_feature = feature[starts]
    rows = ByFeature.from_sorted("abl", ex_feature, n_features, source, {
        "abl.example": smallest_uint(at - np.searchsorted(top.feature, ex_feature)),
    })
    per_feature = np.bincount(ex_feature, weights=length, minlength=n_features).astype(np.int64)
    return [rows, ByFeature("abl_tok", np.concatenate([[0], np.cumsum(per_feature)]), per_token)]
