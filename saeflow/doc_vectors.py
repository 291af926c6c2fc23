"""Document vectors of one hook: each document's pooled value, their mean, each one's cosine to it.

A document's vector pools the hook's rows at its content tokens (special == false) over all its
sequences: `mean` averages them, `last` takes its last content token's row. Token rows run
document by document (no sequence spans two documents), so streaming the chunks in order
completes the documents in order: only the document still open at the end of a block is carried
on, and memory is one block of activations plus one chunk's `doc` and `special` columns. Rows are
summed in float64 and the vectors stored float32; a second pass over the stored vectors gives
each document's cosine to the mean.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from saeflow import storage
from saeflow.activations import iter_chunk_rows, open_dense_chunk
from saeflow.chunks import read_token_rows
from saeflow.errors import SaeflowError

log = logging.getLogger(__name__)

POOLS = ("mean", "last")
DOC_VECTOR_SCHEMA = pa.schema(
    [
        ("doc", pa.int32()),
        ("n_pooled", pa.int32()),
        ("norm", pa.float32()),
        ("cosine_to_mean", pa.float32()),
        ("cosine_to_mean_of_normalized", pa.float32()),
    ]
)
_STORE_CHUNK_BYTES = 4 << 20  # about this much float32 per Zarr chunk of `vectors`
_READ_BLOCK_BYTES = 32 << 20  # about this much float64 per block read back


@dataclass
class Pooled:
    """Pooled content rows of consecutive documents: for each, the sum of its rows (mean pool) or
    its last row (last pool), in float64, and how many rows it pooled."""

    doc: np.ndarray  # [n] int64, ascending
    value_ND: np.ndarray  # [n, d] float64
    count: np.ndarray  # [n] int64

    def __len__(self) -> int:
        return len(self.doc)

    def part(self, rows: slice) -> "Pooled":
        return Pooled(self.doc[rows], self.value_ND[rows], self.count[rows])


def pool_rows(acts_TD: np.ndarray, doc: np.ndarray, special: np.ndarray, pool: str) -> Pooled:
    """Pool a block of token rows (documents in ascending order) per run of one document,
    leaving out the special tokens."""
    content = ~np.asarray(special, dtype=bool)
    doc, acts_TD = np.asarray(doc, dtype=np.int64)[content], acts_TD[content]
    starts = np.flatnonzero(np.diff(doc, prepend=-1))
    count = np.diff(np.append(starts, len(doc)))
    if not len(doc):
        value_ND = np.zeros((0, acts_TD.shape[1]))
    elif pool == "mean":
        # One contiguous sum per run: 2-8x faster than np.add.reduceat over rows, even for
        # thousands of runs a block.
        value_ND = np.stack([acts_TD[start : start + n].sum(axis=0, dtype=np.float64)
                             for start, n in zip(starts.tolist(), count.tolist())])
    else:
        value_ND = acts_TD[starts + count - 1].astype(np.float64)
    return Pooled(doc[starts], value_ND, count)


def merge_open(open_doc: Pooled | None, block: Pooled, pool: str) -> tuple[Pooled | None, Pooled | None]:
    """(the documents now complete, the one still open) after `block` follows `open_doc`."""
    if not len(block):
        return None, open_doc
    if open_doc is not None and block.doc[0] == open_doc.doc[0]:
        if pool == "mean":  # (for `last`, the block's row is the later one)
            block.value_ND[0] += open_doc.value_ND[0]
        block.count[0] += open_doc.count[0]
    elif open_doc is not None:
        block = Pooled(np.concatenate([open_doc.doc, block.doc]), np.concatenate([open_doc.value_ND, block.value_ND]),
                       np.concatenate([open_doc.count, block.count]))
    last = block.part(slice(-1, None))
    still_open = Pooled(last.doc.copy(), last.value_ND.copy(), last.count.copy())  # not a view of the block
    return (block.part(slice(None, -1)) if len(block) > 1 else None), still_open


def cosines(rows_ND: np.ndarray, unit: np.ndarray) -> pa.Array:
    """Cosine of each row with a unit vector (float32); null for a zero row or a zero `unit`."""
    norm = np.linalg.norm(rows_ND, axis=1)
    valid = (norm > 0) & bool(np.any(unit))
    value = np.divide(rows_ND @ unit, norm, out=np.zeros(len(rows_ND)), where=valid)
    return pa.array(value.astype(np.float32), mask=~valid, type=pa.float32())


def unit_vector(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return vector / norm if norm else vector


def count_documents(documents_path) -> int:
    """The number of documents, checking that `doc` numbers them 0.. in row order."""
    docs = storage.read_parquet_columns(documents_path, ["doc"])["doc"]
    if (docs != np.arange(len(docs))).any():
        raise SaeflowError(f"{documents_path}: column `doc` must number the rows 0, 1, ...; "
                           "rerun the corpus rule to rebuild it")
    return len(docs)


class _RowStore:
    """The `vectors` array, written front to back in whole Zarr chunks (so none is compressed
    twice), plus what the mean needs: the sums of the vectors and of their unit vectors."""

    def __init__(self, store: storage.ZarrChunkWriter, n_documents: int, d: int, pool: str, where: str):
        rows = max(1, _STORE_CHUNK_BYTES // (4 * d))
        self.array = store.create("vectors", (n_documents, d), "float32", rows_per_chunk=rows)
        self.rows_per_chunk = self.array.chunks[0]
        self.n_documents, self.pool, self.where = n_documents, pool, where
        self.n_pooled = np.zeros(n_documents, dtype=np.int32)
        self.total, self.total_normalized = np.zeros(d), np.zeros(d)
        self._pending: list[np.ndarray] = []
        self._n_pending = self.n_written = 0

    def add(self, done: Pooled) -> None:
        start = self.n_written + self._n_pending
        expected = np.arange(start, start + len(done))
        if len(done) and (done.doc != expected).any():
            missing = int(expected[np.flatnonzero(done.doc != expected)[0]])
            raise SaeflowError(f"{self.where}: document {missing} has no content tokens in the activation "
                               "chunks; rerun the corpus and activation rules to rebuild them")
        vectors_ND = done.value_ND / done.count[:, None] if self.pool == "mean" else done.value_ND
        norm = np.linalg.norm(vectors_ND, axis=1, keepdims=True)
        self.total += vectors_ND.sum(axis=0)
        self.total_normalized += np.divide(vectors_ND, norm, out=np.zeros_like(vectors_ND), where=norm > 0).sum(axis=0)
        self.n_pooled[done.doc] = done.count if self.pool == "mean" else 1
        self._pending.append(vectors_ND.astype(np.float32))
        self._n_pending += len(done)
        if self._n_pending >= self.rows_per_chunk:
            self._write(self._n_pending // self.rows_per_chunk * self.rows_per_chunk)

    def finish(self) -> None:
        self._write(self._n_pending)
        if self.n_written != self.n_documents:
            raise SaeflowError(f"{self.where}: documents {self.n_written}..{self.n_documents - 1} have no content "
                               "tokens in the activation chunks; rerun the corpus and activation rules to rebuild them")

    def _write(self, n: int) -> None:
        if not n:
            return
        rows = np.concatenate(self._pending)
        self.array[self.n_written : self.n_written + n] = rows[:n]
        self.n_written += n
        self._pending, self._n_pending = [rows[n:]], len(rows) - n


def _chunk_rows(chunk_path, start_expected: int, n_tokens: int, tokens_path) -> tuple[int, int, dict]:
    """(token_start, n_rows, attrs) of one activation chunk, checked against the chunks before it."""
    group = open_dense_chunk(chunk_path)
    start, n_rows = int(group.attrs["token_start"]), group["acts"].shape[0]
    if start != start_expected:
        raise SaeflowError(f"{chunk_path}: starts at token {start}, but the chunks before it end at token "
                           f"{start_expected}; rerun the workflow to rebuild the activation chunks")
    if start + n_rows > n_tokens:
        raise SaeflowError(f"{chunk_path}: rows for tokens {start}..{start + n_rows - 1}, but {tokens_path} has "
                           f"{n_tokens} tokens; rerun the workflow to rebuild the activation chunks")
    return start, n_rows, dict(group.attrs) | {"d": group["acts"].shape[1]}


def document_vectors(chunk_paths: list, tokens_path, documents_path, pool: str, vectors_path, mean_path,
                     table_path) -> np.ndarray:
    """Write doc_vectors.zarr, doc_mean.safetensors and doc_vectors.parquet of one hook from its
    activation chunks (in plan order); return the mean document vector (float64)."""
    if pool not in POOLS:
        raise SaeflowError(f"vectors.pool: {pool!r} is not one of {POOLS}")
    if not chunk_paths:
        raise SaeflowError(f"{vectors_path}: no activation chunks to read")
    n_documents = count_documents(documents_path)
    if not n_documents:
        raise SaeflowError(f"{documents_path}: no documents; rerun the corpus rule with a non-empty corpus")
    n_tokens = storage.open_parquet(tokens_path).metadata.num_rows
    first = _chunk_rows(chunk_paths[0], 0, n_tokens, tokens_path)[2]
    where = f"{tokens_path} and {documents_path}"
    with storage.ZarrChunkWriter(vectors_path, {"pool": pool, "hook": first.get("hook"), "model": first.get("model"),
                                                "n_documents": n_documents}) as store:
        sink = _RowStore(store, n_documents, first["d"], pool, where)
        open_doc, position = None, 0
        for chunk_path in chunk_paths:
            start, n_rows, attrs = _chunk_rows(chunk_path, position, n_tokens, tokens_path)
            if not n_rows:
                continue
            if attrs["d"] != first["d"] or attrs.get("hook") != first.get("hook"):
                raise SaeflowError(f"{chunk_path}: hook {attrs.get('hook')!r} of width {attrs['d']}, but "
                                   f"{chunk_paths[0]} has {first.get('hook')!r} of width {first['d']}")
            tokens = read_token_rows(tokens_path, start, start + n_rows, ["doc", "special"])
            doc = tokens["doc"].astype(np.int64)
            previous = -1 if open_doc is None else int(open_doc.doc[0])
            if len(doc) and ((np.diff(doc) < 0).any() or doc[0] < previous or doc.max() >= n_documents):
                raise SaeflowError(f"{chunk_path}: its tokens' documents (in {tokens_path}) are out of order or "
                                   f"beyond the {n_documents} of {documents_path}; rerun the workflow to rebuild them")
            offset = 0
            for block in iter_chunk_rows(chunk_path):
                stop = offset + len(block)
                pooled = pool_rows(block, doc[offset:stop], tokens["special"][offset:stop], pool)
                done, open_doc = merge_open(open_doc, pooled, pool)
                if done is not None:
                    sink.add(done)
                offset = stop
            position = start + n_rows
        if position != n_tokens:
            raise SaeflowError(f"{tokens_path}: {n_tokens} tokens, but the {len(chunk_paths)} activation chunks hold "
                               f"{position}; rerun the workflow to rebuild the activation chunks")
        if open_doc is not None:
            sink.add(open_doc)
        sink.finish()
        mean = sink.total / n_documents
        mean_of_normalized = sink.total_normalized / n_documents
        _write_doc_table(table_path, sink.array, sink.n_pooled, mean, mean_of_normalized)
    storage.write_safetensors(
        mean_path,
        {name: value.astype(np.float32) for name, value in
         (("mean", mean), ("mean_normalized", unit_vector(mean)), ("mean_of_normalized", mean_of_normalized))},
        {"n_documents": n_documents, "pool": pool},
    )
    log.info("%d documents, %d tokens, %d chunks, pool %s: |mean| %.4g, |mean of normalised| %.4g", n_documents,
             n_tokens, len(chunk_paths), pool, np.linalg.norm(mean), np.linalg.norm(mean_of_normalized))
    return mean


def _write_doc_table(table_path, vectors, n_pooled: np.ndarray, mean: np.ndarray,
                     mean_of_normalized: np.ndarray) -> None:
    """doc_vectors.parquet from the stored (float32) vectors, read back in blocks."""
    n_documents, d = vectors.shape
    block = max(1, _READ_BLOCK_BYTES // (8 * d))
    to_mean, to_normalized = unit_vector(mean), unit_vector(mean_of_normalized)
    with storage.ParquetStream(table_path, DOC_VECTOR_SCHEMA) as out:
        for start in range(0, n_documents, block):
            stop = min(start + block, n_documents)
            rows_ND = vectors[start:stop].astype(np.float64)
            out.write({
                "doc": np.arange(start, stop, dtype=np.int32),
                "n_pooled": n_pooled[start:stop],
                "norm": np.linalg.norm(rows_ND, axis=1).astype(np.float32),
                "cosine_to_mean": cosines(rows_ND, to_mean),
                "cosine_to_mean_of_normalized": cosines(rows_ND, to_normalized),
            })
