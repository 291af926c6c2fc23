"""Calibration and test documents: seeded, stratified by label.

Thresholds and unit pruning are fitted on calibration documents and detection is reported on
both splits, so a concept score that only holds on the documents it was fitted to shows up.
Documents are ordered by stratum (their sorted set of document and span labels), shuffled with
the seed within each stratum, and taken systematically: the i-th document of that order goes to
calibration when ⌊(i+1)·f⌋ > ⌊i·f⌋. Every stratum then gets its fraction f to within one document,
and the whole corpus to within one.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from saeflow import storage
from saeflow.errors import SaeflowError

SPLITS = ("calibration", "test")


def strata(labels: list | None, spans: list | None, n_documents: int) -> list[tuple[str, ...]]:
    """Each document's stratum: its distinct document and span labels, sorted."""
    keys = []
    for doc in range(n_documents):
        names = set(labels[doc] or []) if labels is not None else set()
        names |= {span["label"] for span in spans[doc] or []} if spans is not None else set()
        keys.append(tuple(sorted(names)))
    return keys


def assign_splits(keys: list[tuple[str, ...]], calibration_fraction: float, seed: int) -> np.ndarray:
    """True where a document is in the calibration split, for documents with these strata."""
    if not 0 < calibration_fraction < 1:
        raise SaeflowError(f"concepts.calibration_fraction must lie strictly between 0 and 1, got {calibration_fraction}")
    n = len(keys)
    _, stratum = np.unique(np.array([repr(key) for key in keys], dtype=object), return_inverse=True)
    shuffle = np.random.default_rng(seed).permutation(n)  # a random key per document
    order = np.lexsort((shuffle, stratum))
    position = np.arange(n)
    taken = np.floor((position + 1) * calibration_fraction) > np.floor(position * calibration_fraction)
    calibration = np.empty(n, dtype=bool)
    calibration[order] = taken
    return calibration


def split_documents(unsplit_path, out_path, calibration_fraction: float, seed: int) -> dict[str, int]:
    """documents.parquet: the corpus job's document table with a `split` column added, copied one
    row group at a time (the texts are the whole corpus; only the labels are read at once)."""
    with storage.open_parquet(unsplit_path) as unsplit:
        names = unsplit.schema_arrow.names
        n_documents = unsplit.metadata.num_rows
        if n_documents < 2:
            raise SaeflowError(f"{unsplit_path}: {n_documents} document(s); calibration and test splits need at "
                               "least two documents: add documents to corpus.source")
        columns = [name for name in ("labels", "spans") if name in names]
        with storage.parquet_errors(unsplit_path):
            labelled = unsplit.read(columns=columns) if columns else None
        keys = strata(labelled.column("labels").to_pylist() if "labels" in columns else None,
                      labelled.column("spans").to_pylist() if "spans" in columns else None, n_documents)
        split = np.where(assign_splits(keys, calibration_fraction, seed), SPLITS[0], SPLITS[1])
        schema = unsplit.schema_arrow.append(pa.field("split", pa.string()))
        with storage.ParquetStream(out_path, schema) as out:
            start = 0
            for group in range(unsplit.num_row_groups):
                with storage.parquet_errors(unsplit_path):
                    rows = unsplit.read_row_group(group)
                out.write({**{name: rows[name] for name in names},
                           "split": pa.array(split[start:start + rows.num_rows], pa.string())})
                start += rows.num_rows
    return {name: int((split == name).sum()) for name in SPLITS}
