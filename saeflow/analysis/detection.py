"""How well each unit's max over an item (a document, or a single token) detects each label.

The scores stay sparse: an item where the unit never fires has max 0, which ties with every
other such item, so only items where it fires need individual ranks. (The fields say `doc`;
for token-level detection each item is one token.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saeflow.analysis.entries import Entries
from saeflow.analysis.groups import is_sorted, packed_key, run_starts
from saeflow.errors import SaeflowError


@dataclass(frozen=True)
class DocMax:
    """One row per (unit, doc) where the unit fires, sorted by (unit, doc)."""

    unit: np.ndarray  # int64
    doc: np.ndarray  # int64
    value: np.ndarray  # float32


@dataclass(frozen=True)
class Detection:
    """Rows in (unit, label) order; NaN means null (undefined)."""

    unit: np.ndarray  # int64, as in the entries (filtered ids: map through kept_units to write)
    label: np.ndarray  # int64, label index
    precision: np.ndarray  # float64, null where the unit detects no document
    recall: np.ndarray  # float64, null where no document has the label
    f1: np.ndarray  # float64, 0 where precision + recall is 0, null where either is null
    auroc: np.ndarray  # float64, null where the label is on all or no documents


def item_maxima(entries: Entries, item_of_token: np.ndarray) -> DocMax:
    """Per-(unit, item) max of the entries; item_of_token[t] is the item of token t, or −1 where
    token t is not scored."""
    item = np.asarray(item_of_token)[entries.token].astype(np.int64)
    scored = item >= 0
    return _reduce(entries.feature[scored], item[scored], entries.value[scored])


def detection_scores(
    maxima: DocMax,
    thresholds: np.ndarray,
    member_doc: np.ndarray,
    member_label: np.ndarray,
    n_docs: int,
    n_labels: int,
) -> Detection:
    """Scores of every (unit, label), where document member_doc[i] carries label member_label[i].

    maxima: over all tokens. A document is detected where the unit's max reaches its
    threshold; thresholds (one per unit) are percentiles of nonzero activations, so positive,
    or NaN for a unit that never fires. Repeated (doc, label) pairs count once.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if (thresholds <= 0).any():
        raise SaeflowError("detection thresholds must be positive (percentiles of nonzero activations)")
    n_units = thresholds.size
    if maxima.unit.size and (maxima.unit.max() >= n_units or maxima.doc.max() >= n_docs):
        raise SaeflowError(f"document maxima refer to a unit >= {n_units} or a document >= {n_docs}")
    member_doc, member_label = np.asarray(member_doc, dtype=np.int64), np.asarray(member_label, dtype=np.int64)
    if member_doc.shape != member_label.shape or member_doc.ndim != 1:
        raise SaeflowError("document labels must be two 1-D arrays of equal length (doc, label)")
    doc_label = np.unique(np.stack([member_doc, member_label], axis=1), axis=0)  # sorted by doc
    if doc_label.size and (doc_label[:, 0].max() >= n_docs or doc_label[:, 1].max() >= n_labels):
        raise SaeflowError("document labels refer to a document or label index out of range")
    n_pos = np.bincount(doc_label[:, 1], minlength=n_labels)
    n_neg = n_docs - n_pos

    rank = _ranks(maxima, n_units, n_docs)
    zero_rank = (n_docs - np.bincount(maxima.unit, minlength=n_units) + 1) / 2
    detected = maxima.value >= thresholds[maxima.unit]

    # Pair every (unit, doc) row with each label of its doc.
    row, label = _rows_by_label(maxima.doc, doc_label, n_docs)
    cell = maxima.unit[row] * n_labels + label
    size = n_units * n_labels
    true_pos = np.bincount(cell, weights=detected[row], minlength=size).reshape(n_units, n_labels)
    rank_excess = np.bincount(cell, weights=rank[row] - zero_rank[maxima.unit[row]], minlength=size)
    rank_sum = n_pos[None, :] * zero_rank[:, None] + rank_excess.reshape(n_units, n_labels)

    n_detected = np.bincount(maxima.unit, weights=detected, minlength=n_units)[:, None]
    precision = ratio(true_pos, n_detected)
    recall = ratio(true_pos, n_pos[None, :])
    f1 = ratio(2 * precision * recall, precision + recall)
    f1[(precision + recall) == 0] = 0.0
    auroc = ratio(rank_sum - n_pos * (n_pos + 1) / 2, (n_pos * n_neg)[None, :])
    return Detection(
        unit=np.repeat(np.arange(n_units, dtype=np.int64), n_labels),
        label=np.tile(np.arange(n_labels, dtype=np.int64), n_units),
        precision=precision.ravel(),
        recall=recall.ravel(),
        f1=f1.ravel(),
        auroc=auroc.ravel(),
    )


def _reduce(unit: np.ndarray, doc: np.ndarray, value: np.ndarray) -> DocMax:
    if unit.size and is_sorted(unit, doc):
        # Already grouped (a feature shard's entries are in (feature, token) order): max of each run.
        starts = np.flatnonzero(run_starts(unit, doc))
        return DocMax(unit[starts], doc[starts], np.maximum.reduceat(value, starts))
    order = np.lexsort((-value, doc, unit))
    keep = order[run_starts(unit[order], doc[order])]
    return DocMax(unit[keep], doc[keep], value[keep])


def _ranks(maxima: DocMax, n_units: int, n_docs: int) -> np.ndarray:
    """Each row's average rank (1-based, ascending, ties averaged) among all n_docs maxima of its unit."""
    # Order among equal values doesn't matter (ties share their average rank), so an unstable
    # sort of one packed key does where the values allow it.
    key = packed_key(maxima.unit, maxima.value)
    order = np.lexsort((maxima.value, maxima.unit)) if key is None else np.argsort(key)
    unit, value = maxima.unit[order], maxima.value[order]
    unit_start = np.flatnonzero(run_starts(unit))
    before_unit = np.repeat(unit_start, np.diff(np.append(unit_start, order.size)))
    tie_start = np.flatnonzero(run_starts(unit, value))
    tie_size = np.diff(np.append(tie_start, order.size))
    first_in_tie = np.repeat(tie_start, tie_size)
    last_in_tie = first_in_tie + np.repeat(tie_size, tie_size) - 1
    n_zero = n_docs - np.bincount(unit, minlength=n_units)[unit]
    rank = np.empty(order.size)
    # Zero maxima take ranks 1..n_zero; nonzero ones follow, averaged over each run of equal values.
    rank[order] = n_zero + (first_in_tie + last_in_tie) / 2 - before_unit + 1
    return rank


def _rows_by_label(doc: np.ndarray, doc_label: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, label) for every row of `doc` and every label of that doc (doc_label sorted by doc)."""
    per_doc = np.bincount(doc_label[:, 0], minlength=n_docs)
    first = np.cumsum(per_doc) - per_doc
    n_labels_of_row = per_doc[doc]
    row = np.repeat(np.arange(doc.size), n_labels_of_row)
    within = np.arange(row.size) - np.repeat(np.cumsum(n_labels_of_row) - n_labels_of_row, n_labels_of_row)
    return row, doc_label[first[doc[row]] + within, 1]


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (or either side is NaN)."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, dtype=np.float64), denominator)
    return np.divide(numerator, denominator, out=np.full(numerator.shape, np.nan), where=denominator != 0)
