"""The dense baseline of concept detection: the hook's raw dimensions scored as detectors.

Each dimension d is taken in both signs, unit (d, +1) with value x_d and unit (d, −1) with −x_d,
and scored exactly as an SAE feature is (saeflow.analysis.detection): a threshold at the
detection percentile of its values over the calibration tokens, an item's score the max of its
values over the item's tokens, and precision, recall, F1 and AUROC of each label per (level,
split). A concept then shows whether the SAE beats single neurons.

Memory is set by a budget, not by the corpus: dimensions go in blocks, each block pass streams
every chunk again (a chunk stores rows of all columns) and keeps [block, n_tokens] float32.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from saeflow import storage
from saeflow.activations import iter_chunk_rows, open_dense_chunk
from saeflow.analysis.detection import ratio
from saeflow.concept_items import ConceptCorpus, ScoredItems, load_concept_corpus
from saeflow.errors import SaeflowError

log = logging.getLogger(__name__)

DENSE_DETECTION_SCHEMA = pa.schema([("dim", pa.int64()), ("sign", pa.int8()), ("label", pa.string()),
                                    ("level", pa.string()), ("split", pa.string()), ("threshold", pa.float64()),
                                    ("precision", pa.float64()), ("recall", pa.float64()), ("f1", pa.float64()),
                                    ("auroc", pa.float64())])
SIGNS = (1, -1)
# Bytes per (token, dimension) of a block pass: its float32 values, the copy at the scored
# tokens, the item scores, and room for sorting scratch.
_BYTES_PER_VALUE = 4 * 4


@dataclass(frozen=True)
class Scoring:
    """One (level, split) reduced to what a block needs: the scored tokens (ascending), where
    each item's run of them starts, and the distinct (item, label) pairs."""

    level: str
    split: str
    names: list[str]
    tokens: np.ndarray  # int64
    starts: np.ndarray  # int64, into tokens
    pair_item: np.ndarray  # int64
    pair_label: np.ndarray  # int64
    n_positive: np.ndarray  # int64 per label

    @property
    def n_items(self) -> int:
        return self.starts.size


def scoring(items: ScoredItems) -> Scoring:
    tokens = np.flatnonzero(items.item_of_token >= 0)
    item = items.item_of_token[tokens]
    # reduceat needs each item's tokens in one run: ScoredItems numbers its items in token order.
    if (np.diff(item) < 0).any():
        raise SaeflowError(f"{items.level}/{items.split} items are not in token order: a bug in saeflow.concept_items")
    starts = np.flatnonzero(np.diff(item, prepend=-1) != 0)
    pairs = np.unique(np.stack([items.member_item, items.member_label], axis=1), axis=0)  # a repeat counts once
    return Scoring(items.level, items.split, items.names, tokens, starts, pairs[:, 0], pairs[:, 1],
                   np.bincount(pairs[:, 1], minlength=len(items.names)))


def chunk_width(chunk_paths: list, n_tokens: int) -> int:
    """The hook's width d, after checking the chunks hold rows for tokens 0..n_tokens−1 in order."""
    if not chunk_paths:
        raise SaeflowError("dense detection: no activation chunks to read")
    position, width = 0, None
    for path in chunk_paths:
        group = open_dense_chunk(path)
        start, (n_rows, d) = int(group.attrs["token_start"]), group["acts"].shape
        if start != position:
            raise SaeflowError(f"{path}: starts at token {start}, but the chunks before it end at token {position}; "
                               "delete the activation chunks and rerun the workflow to recapture them")
        if width is not None and d != width:
            raise SaeflowError(f"{path}: width {d}, but {chunk_paths[0]} has width {width}; delete the activation "
                               "chunks and rerun the workflow to recapture them")
        position, width = start + n_rows, d
    if position != n_tokens:
        raise SaeflowError(f"{Path(chunk_paths[-1]).parent}: the {len(chunk_paths)} activation chunks hold "
                           f"{position} rows, but the corpus (tokens.parquet) has {n_tokens} tokens; delete the "
                           "chunks and rerun the workflow to recapture them")
    return width


def block_size(d: int, n_tokens: int, memory_mb: int) -> int:
    """How many dimensions one pass holds within memory_mb."""
    return max(1, min(d, memory_mb * 2**20 // (max(n_tokens, 1) * _BYTES_PER_VALUE)))


def read_columns(chunk_paths: list, n_tokens: int, dims: slice) -> np.ndarray:
    """values_UT [n_dims, n_tokens] float32 of these dimensions, unit-major so each unit's
    values are contiguous for its sorts."""
    values_UT = np.empty((dims.stop - dims.start, n_tokens), dtype=np.float32)
    position = 0
    for path in chunk_paths:
        for block_TD in iter_chunk_rows(path):
            values_UT[:, position:position + len(block_TD)] = block_TD[:, dims].T
            position += len(block_TD)
    return values_UT


def thresholds(values_UT: np.ndarray, calibration: np.ndarray, q: float) -> dict[int, np.ndarray]:
    """Per sign, np.percentile of each unit's values over the calibration tokens (NaN without any)."""
    if not calibration.any():
        return {sign: np.full(len(values_UT), np.nan) for sign in SIGNS}
    # A float64 q, as the SAE side's list of percentiles: a Python float q would round to float32.
    q = np.float64(q)
    calibration_UT = values_UT[:, calibration]
    result = {1: np.percentile(calibration_UT, q, axis=1, overwrite_input=True)}
    # overwrite_input only reorders each row, so negating the same buffer gives the −1 sign's values.
    result[-1] = np.percentile(np.negative(calibration_UT, out=calibration_UT), q, axis=1, overwrite_input=True)
    return result


def item_scores(scored_UT: np.ndarray, starts: np.ndarray, sign: int) -> np.ndarray:
    """[n_units, n_items] max of sign·value over each item's tokens (−min for sign −1: exact)."""
    if starts.size == scored_UT.shape[1]:  # one token per item (token level, or no items): the values
        return scored_UT if sign == 1 else np.negative(scored_UT)
    if sign == 1:
        return np.maximum.reduceat(scored_UT, starts, axis=1)
    scores = np.minimum.reduceat(scored_UT, starts, axis=1)
    return np.negative(scores, out=scores)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ascending ranks, ties sharing their average rank (float64)."""
    order = np.argsort(values)
    ordered = values[order]
    tie_start = np.flatnonzero(np.append(True, ordered[1:] != ordered[:-1]))
    tie_stop = np.append(tie_start[1:], values.size)
    ranks = np.empty(values.size)
    ranks[order] = np.repeat((tie_start + tie_stop + 1) / 2, tie_stop - tie_start)
    return ranks


def detection_metrics(scores_UI: np.ndarray, threshold_U: np.ndarray, scoring: Scoring) -> dict[str, np.ndarray]:
    """precision, recall, f1, auroc [n_units, n_labels], NaN where undefined (as detection_scores)."""
    n_units, n_labels = len(scores_UI), len(scoring.names)
    true_pos, rank_sum = np.zeros((n_units, n_labels)), np.zeros((n_units, n_labels))
    n_detected = np.zeros(n_units)
    for unit, scores in enumerate(scores_UI):
        detected = scores >= threshold_U[unit]
        n_detected[unit] = detected.sum()
        true_pos[unit] = np.bincount(scoring.pair_label, weights=detected[scoring.pair_item], minlength=n_labels)
        ranks = average_ranks(scores)
        rank_sum[unit] = np.bincount(scoring.pair_label, weights=ranks[scoring.pair_item], minlength=n_labels)
    n_pos = scoring.n_positive.astype(np.float64)
    precision = ratio(true_pos, n_detected[:, None])
    recall = ratio(true_pos, np.broadcast_to(n_pos, true_pos.shape))
    f1 = ratio(2 * precision * recall, precision + recall)
    f1[(precision + recall) == 0] = 0.0
    auroc = ratio(rank_sum - n_pos * (n_pos + 1) / 2, np.broadcast_to(n_pos * (scoring.n_items - n_pos), f1.shape))
    return {"precision": precision, "recall": recall, "f1": f1, "auroc": auroc}


def block_table(values_UT: np.ndarray, first_dim: int, corpus: ConceptCorpus, scorings: list[Scoring],
                q: float) -> pa.Table:
    """Every row of one block of dimensions, in the table's order."""
    dims = np.arange(first_dim, first_dim + len(values_UT), dtype=np.int64)
    threshold = thresholds(values_UT, corpus.calibration_tokens(), q)
    parts = []
    for items in scorings:
        scored_UT = values_UT[:, items.tokens]
        for sign in SIGNS:
            metrics = detection_metrics(item_scores(scored_UT, items.starts, sign), threshold[sign], items)
            parts.append(_rows(dims, sign, items, threshold[sign], metrics))
        del scored_UT  # before the next gather, so two copies never coexist
    # The schema's order: dim, sign +1 before −1, label, level, split.
    return pa.concat_tables(parts).sort_by([("dim", "ascending"), ("sign", "descending"), ("label", "ascending"),
                                            ("level", "ascending"), ("split", "ascending")])


def dense_detection(chunk_paths: list, corpus: ConceptCorpus, detection_percentile: float, memory_mb: int,
                    progress=None) -> pa.Table:
    """The dense detection table of a hook's chunks (in plan order) against the corpus's concepts."""
    if not 0 <= detection_percentile <= 100:
        raise SaeflowError(f"analysis.detection_percentile must lie in [0, 100], got {detection_percentile}")
    n_tokens = len(corpus.token_doc)
    d = chunk_width(chunk_paths, n_tokens)
    scorings = [scoring(items) for items in corpus.scored_items()]
    if not scorings:  # no labels nor spans: nothing to detect
        return DENSE_DETECTION_SCHEMA.empty_table()
    block = block_size(d, n_tokens, memory_mb)
    begun, parts = time.perf_counter(), []
    for first in range(0, d, block):
        dims = slice(first, min(first + block, d))
        parts.append(block_table(read_columns(chunk_paths, n_tokens, dims), first, corpus, scorings,
                                 detection_percentile))
        if progress is not None:
            progress.update(dims.stop - dims.start)
    log.info("dense detection: %d tokens, %d dims in %d blocks of %d, %d (level, split) sets, %.1f s",
             n_tokens, d, len(parts), block, len(scorings), time.perf_counter() - begun)
    return pa.concat_tables(parts)


def dense_detection_job(chunk_paths: list, tokens_path, documents_path, out_path, detection_percentile: float,
                        memory_mb: int) -> None:
    from saeflow.jobs import progress

    corpus = load_concept_corpus(tokens_path, documents_path)
    with progress(None, "dimensions", "dim") as bar:
        table = dense_detection(chunk_paths, corpus, detection_percentile, memory_mb, bar)
    storage.write_table(out_path, table)


def _rows(dims: np.ndarray, sign: int, items: Scoring, threshold_U: np.ndarray, metrics: dict) -> pa.Table:
    n_labels = len(items.names)
    n_rows = dims.size * n_labels
    return pa.table({
        "dim": pa.array(np.repeat(dims, n_labels), pa.int64()),
        "sign": pa.array(np.full(n_rows, sign, dtype=np.int8), pa.int8()),
        "label": pa.array(np.tile(np.asarray(items.names, dtype=object), dims.size) if n_rows else [], pa.string()),
        "level": pa.array([items.level] * n_rows, pa.string()),
        "split": pa.array([items.split] * n_rows, pa.string()),
        "threshold": storage.nullable_floats(np.repeat(threshold_U, n_labels)),
        **{name: storage.nullable_floats(values.ravel()) for name, values in metrics.items()},
    }, schema=DENSE_DETECTION_SCHEMA)
