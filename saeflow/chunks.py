"""The chunk plan: how the token index range is cut into chunks of whole sequences.

Every per-chunk artifact (activations of each layer, each SAE's sparse features) uses the same
plan, `results/activations/chunks.json`, so chunk c means the same token rows everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

from saeflow import storage
from saeflow.errors import SaeflowError


@dataclass(frozen=True)
class Chunk:
    id: str
    token_start: int
    n_tokens: int
    seq_start: int
    n_seqs: int

    @property
    def token_stop(self) -> int:
        return self.token_start + self.n_tokens


def chunk_id(index: int) -> str:
    return f"chunk-{index:04d}"


def sequence_lengths(tokens_path) -> np.ndarray:
    """Tokens per sequence, streamed from the `seq` column (sequences are numbered 0.. in order)."""
    counts = np.zeros(0, dtype=np.int64)
    for batch in storage.iter_parquet_batches(tokens_path, ["seq"]):
        batch_counts = np.bincount(batch["seq"])
        if len(batch_counts) > len(counts):
            counts = np.pad(counts, (0, len(batch_counts) - len(counts)))
        counts[: len(batch_counts)] += batch_counts
    return counts


def plan_chunks(seq_lengths: np.ndarray, tokens_per_chunk: int) -> list[Chunk]:
    """Greedily pack whole sequences into chunks of at most `tokens_per_chunk` tokens.

    A sequence longer than the budget gets a chunk of its own.
    """
    if tokens_per_chunk < 1:
        raise SaeflowError("activations.tokens_per_chunk: must be at least 1")
    chunks: list[Chunk] = []
    seq_start = token_start = 0
    n_tokens = 0
    for seq, length in enumerate(seq_lengths.tolist()):
        if n_tokens and n_tokens + length > tokens_per_chunk:
            chunks.append(Chunk(chunk_id(len(chunks)), token_start, n_tokens, seq_start, seq - seq_start))
            seq_start, token_start, n_tokens = seq, token_start + n_tokens, 0
        n_tokens += length
    if n_tokens:
        chunks.append(Chunk(chunk_id(len(chunks)), token_start, n_tokens, seq_start, len(seq_lengths) - seq_start))
    return chunks


def write_plan(path, chunks: list[Chunk], tokens_per_chunk: int) -> None:
    storage.write_json(
        path,
        {
            "tokens_per_chunk": tokens_per_chunk,
            "n_tokens": sum(c.n_tokens for c in chunks),
            "chunks": [c.__dict__ for c in chunks],
        },
    )


def read_plan(path) -> list[Chunk]:
    return [Chunk(**entry) for entry in storage.read_json(path)["chunks"]]


def find_chunk(plan_path, chunk: str) -> Chunk:
    for candidate in read_plan(plan_path):
        if candidate.id == chunk:
            return candidate
    raise SaeflowError(f"{plan_path}: no chunk {chunk!r}; rerun the workflow to refresh the plan")


def read_token_rows(tokens_path, start: int, stop: int, columns: list[str]) -> dict[str, np.ndarray]:
    """Rows start..stop-1 of tokens.parquet, reading only the row groups that overlap them."""
    parquet = pq.ParquetFile(tokens_path)
    groups, first_row, row = [], None, 0
    for index in range(parquet.num_row_groups):
        n = parquet.metadata.row_group(index).num_rows
        if row < stop and row + n > start:
            groups.append(index)
            first_row = row if first_row is None else first_row
        row += n
    table = parquet.read_row_groups(groups, columns=columns)
    table = table.slice(start - first_row, stop - start)
    return {name: table.column(name).to_numpy() for name in columns}
