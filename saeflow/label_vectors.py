"""Label vectors of one hook, and how each SAE feature's decoder row aligns with them.

A label's vector is the mean document vector (saeflow.doc_vectors) of the documents that carry
the label minus the mean of those that don't: a direction to steer along. A label every document
carries, or none does, has no such difference and is left out (with a warning). Alignment is the
cosine of each decoder row W_dec[f] with each label vector, ranked within the label.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow as pa
from safetensors import safe_open

from saeflow import storage
from saeflow.doc_vectors import unit_vector
from saeflow.errors import SaeflowError

log = logging.getLogger(__name__)

LABEL_VECTOR_SCHEMA = pa.schema(
    [("label", pa.string()), ("row", pa.int32()), ("n_with", pa.int32()), ("n_without", pa.int32()),
     ("norm", pa.float32())]
)
ALIGNMENT_SCHEMA = pa.schema(
    [("feature", pa.int64()), ("label", pa.string()), ("cosine", pa.float32()), ("rank", pa.int32())]
)
_DOCUMENT_BATCH = 4096
_BLOCK_BYTES = 32 << 20  # about this much float64 per block of decoder rows


class _LabelSums:
    """Per label seen so far: the sum of the vectors of the documents with it, and their count."""

    def __init__(self, d: int):
        self.index: dict[str, int] = {}
        self.sum_LD = np.zeros((16, d))
        self.count = np.zeros(16, dtype=np.int64)

    def add(self, doc_labels: list, vectors_ND: np.ndarray) -> None:
        rows, labels = [], []
        for row, names in enumerate(doc_labels):
            for name in sorted(set(names or ())):
                rows.append(row)
                labels.append(self.index.setdefault(name, len(self.index)))
        if len(self.index) > len(self.count):
            grow = max(len(self.index), 2 * len(self.count)) - len(self.count)
            self.sum_LD = np.pad(self.sum_LD, ((0, grow), (0, 0)))
            self.count = np.pad(self.count, (0, grow))
        if not rows:
            return
        labels = np.asarray(labels)
        order = np.argsort(labels, kind="stable")
        labels, rows = labels[order], np.asarray(rows)[order]
        starts = np.flatnonzero(np.diff(labels, prepend=-1))
        self.sum_LD[labels[starts]] += np.add.reduceat(vectors_ND[rows], starts, axis=0)
        self.count[labels[starts]] += np.diff(np.append(starts, len(labels)))


def _document_batches(documents_path, documents):
    with storage.parquet_errors(documents_path):
        yield from documents.iter_batches(batch_size=_DOCUMENT_BATCH, columns=["doc", "labels"])


def label_vectors(vectors_path, documents_path, out_path, table_path) -> list[str]:
    """Write label_vectors.safetensors and label_vectors.parquet of one hook from its document
    vectors and the documents' labels; return the labels kept, in row order."""
    group = storage.open_zarr_group(vectors_path, arrays=("vectors",))
    n_documents, d = group["vectors"].shape
    documents = storage.open_parquet(documents_path)
    if "labels" not in documents.schema_arrow.names:
        raise SaeflowError(f"{documents_path}: no `labels` column: the corpus has no labels (corpus.labels_field)")
    if documents.metadata.num_rows != n_documents:
        raise SaeflowError(f"{vectors_path}: {n_documents} document vectors, but {documents_path} has "
                           f"{documents.metadata.num_rows} documents; rerun the workflow to rebuild them")
    sums, total, start = _LabelSums(d), np.zeros(d), 0
    for batch in _document_batches(documents_path, documents):
        stop = start + batch.num_rows
        if (batch.column("doc").to_numpy() != np.arange(start, stop)).any():
            raise SaeflowError(f"{documents_path}: column `doc` must number the rows 0, 1, ...; "
                               "rerun the corpus rule to rebuild it")
        vectors_ND = storage.read_zarr_array(group, "vectors", slice(start, stop)).astype(np.float64)
        if not np.isfinite(vectors_ND).all():
            raise storage.damaged(vectors_path, f"document vectors {start}..{stop - 1} hold NaN or inf")
        total += vectors_ND.sum(axis=0)
        sums.add(batch.column("labels").to_pylist(), vectors_ND)
        start = stop

    names = sorted(sums.index)
    kept = [name for name in names if 0 < sums.count[sums.index[name]] < n_documents]
    if left_out := sorted(set(names) - set(kept)):
        log.warning("labels on every document, left out (no documents without them to compare): %s",
                    ", ".join(left_out))
    index = np.array([sums.index[name] for name in kept], dtype=np.int64)
    n_with = sums.count[index]
    with_LD = sums.sum_LD[index]
    vectors_LD = with_LD / n_with[:, None] - (total - with_LD) / (n_documents - n_with)[:, None]
    vectors_LD = vectors_LD.reshape(len(kept), d)
    storage.write_safetensors(out_path, {"vectors": vectors_LD.astype(np.float32)},
                              {"labels": json.dumps(kept), "pool": group.attrs.get("pool")})
    storage.write_parquet(table_path, {
        "label": kept,
        "row": np.arange(len(kept), dtype=np.int32),
        "n_with": n_with.astype(np.int32),
        "n_without": (n_documents - n_with).astype(np.int32),
        "norm": np.linalg.norm(vectors_LD, axis=1).astype(np.float32),
    }, LABEL_VECTOR_SCHEMA)
    log.info("%d labels kept of %d, over %d documents", len(kept), len(names), n_documents)
    return kept


def read_label_vectors(path) -> tuple[np.ndarray, list[str]]:
    """(vectors [n_labels, d] float32, the labels in row order) of label_vectors.safetensors."""
    vectors = storage.read_safetensors(path, {"vectors": (None, None)})["vectors"]
    with safe_open(str(path), framework="numpy") as handle:
        try:
            labels = json.loads((handle.metadata() or {}).get("labels", "null"))
        except json.JSONDecodeError:
            labels = None  # reported below
    if not isinstance(labels, list) or len(labels) != len(vectors):
        raise SaeflowError(f"{path}: not label vectors (a `vectors` matrix with one label per row); "
                           "delete it and rerun the workflow")
    return vectors, labels


def label_alignment(weights_path, label_vectors_path, out_path) -> None:
    """Write label_alignment.parquet: the cosine of every feature's decoder row with every label
    vector of its hook (null for a zero row), and its rank among the features within the label
    (0: highest; the null ones last)."""
    W_dec_FD = storage.read_safetensors(weights_path, {"W_dec": (None, None)})["W_dec"]
    vectors_LD, labels = read_label_vectors(label_vectors_path)
    if W_dec_FD.shape[1] != vectors_LD.shape[1]:
        raise SaeflowError(f"{weights_path}: decoder rows of width {W_dec_FD.shape[1]}, but the label vectors of "
                           f"{label_vectors_path} have width {vectors_LD.shape[1]}; rerun the workflow")
    if not labels:
        log.warning("%s: no label vectors; the alignment table is empty", label_vectors_path)
    n_features = len(W_dec_FD)
    cosine_FL, valid_FL = decoder_cosines(W_dec_FD, vectors_LD)
    with storage.ParquetStream(out_path, ALIGNMENT_SCHEMA) as out:
        for column, label in enumerate(labels):
            cosine, valid = cosine_FL[:, column], valid_FL[:, column]
            out.write({
                "feature": np.arange(n_features, dtype=np.int64),
                "label": pa.array([label] * n_features, pa.string()),
                "cosine": pa.array(cosine, mask=~valid, type=pa.float32()),
                "rank": descending_ranks(cosine, valid),
            })
    log.info("%d features x %d labels", n_features, len(labels))


def decoder_cosines(W_dec_FD: np.ndarray, vectors_LD: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([n_features, n_labels] float32 cosines, where they are defined: neither the decoder row nor
    the label vector is zero), computed in float64 a block of decoder rows at a time."""
    units_DL = np.zeros((vectors_LD.shape[1], len(vectors_LD)))
    for column, vector in enumerate(vectors_LD.astype(np.float64)):
        units_DL[:, column] = unit_vector(vector)
    cosine_FL = np.zeros((len(W_dec_FD), len(vectors_LD)), dtype=np.float32)
    valid_FL = np.zeros(cosine_FL.shape, dtype=bool)
    block = max(1, _BLOCK_BYTES // (8 * W_dec_FD.shape[1]))
    for start in range(0, len(W_dec_FD), block):
        rows_BD = W_dec_FD[start : start + block].astype(np.float64)
        norm = np.linalg.norm(rows_BD, axis=1, keepdims=True)
        valid = (norm > 0) & units_DL.any(axis=0)[None, :]
        cosine_FL[start : start + block] = np.divide(rows_BD @ units_DL, norm, out=np.zeros(valid.shape), where=valid)
        valid_FL[start : start + block] = valid
    return cosine_FL, valid_FL


def descending_ranks(score: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each entry's rank (int32, 0 = first): the valid ones by descending score, then the invalid
    ones; ties go to the smaller index."""
    index = np.arange(len(score))
    order = np.lexsort((index, -np.where(valid, score, 0).astype(np.float64), ~valid))
    rank = np.empty(len(score), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return rank
