"""The chunk plan: how the token index range is cut into chunks of whole sequences.

Every per-chunk artifact (activations of each hook, each SAE's sparse features) uses the same
plan, `results/activations/chunks.json`, so chunk c means the same token rows everywhere. The
number of chunks is fixed while the workflow plans, from the corpus's size in bytes, so a dry run
lists every per-chunk job before anything is tokenised; the plan then balances real tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saeflow import storage
from saeflow.chunk_count import chunk_id
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


def sequence_lengths(tokens_path) -> np.ndarray:
    """Tokens per sequence, streamed from the `seq` column (sequences are numbered 0.. in order)."""
    counts = np.zeros(0, dtype=np.int64)
    for batch in storage.iter_parquet_batches(tokens_path, ["seq"]):
        batch_counts = np.bincount(batch["seq"])
        if len(batch_counts) > len(counts):
            counts = np.pad(counts, (0, len(batch_counts) - len(counts)))
        counts[: len(batch_counts)] += batch_counts
    return counts


def plan_chunks(seq_lengths: np.ndarray, n_chunks: int) -> list[Chunk]:
    """Cut the sequences, in order, into `n_chunks` runs of whole sequences with about equal tokens."""
    n_seqs = len(seq_lengths)
    if n_seqs < n_chunks:
        raise SaeflowError(
            f"activations.tokens_per_chunk: the corpus has {n_seqs} sequences, fewer than the {n_chunks} "
            "chunks planned from its size; raise activations.tokens_per_chunk (or use a larger corpus)"
        )
    cumulative = np.cumsum(seq_lengths)
    targets = cumulative[-1] * np.arange(1, n_chunks) / n_chunks
    ends = np.searchsorted(cumulative, targets, side="left") + 1
    previous = 0
    for i in range(n_chunks - 1):
        # At least one sequence per chunk, and one left for each chunk after.
        ends[i] = previous = min(max(ends[i], previous + 1), n_seqs - (n_chunks - 1 - i))
    bounds = np.concatenate([[0], ends, [n_seqs]]).astype(np.int64)
    token_bounds = np.concatenate([[0], cumulative])[bounds]
    return [
        Chunk(chunk_id(i), int(token_bounds[i]), int(token_bounds[i + 1] - token_bounds[i]),
              int(bounds[i]), int(bounds[i + 1] - bounds[i]))
        for i in range(n_chunks)
    ]


def write_plan(path, chunks: list[Chunk]) -> None:
    storage.write_json(path, {"n_tokens": sum(c.n_tokens for c in chunks), "chunks": [c.__dict__ for c in chunks]})


def read_plan(path) -> list[Chunk]:
    entries = storage.read_json(path, keys=("chunks",))["chunks"]
    try:
        return [Chunk(**entry) for entry in entries]
    except TypeError:  # an entry that is not an object of Chunk's fields
        raise storage.damaged(path, f"`chunks` must be a list of objects with keys {list(Chunk.__dataclass_fields__)}"
                              ) from None


def find_chunk(plan_path, chunk: str) -> Chunk:
    for candidate in read_plan(plan_path):
        if candidate.id == chunk:
            return candidate
    raise SaeflowError(f"{plan_path}: no chunk {chunk!r}; rerun the workflow to refresh the plan")


def sequence_bounds(seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row offset and length of each sequence in a run of token rows ordered by sequence."""
    starts = np.flatnonzero(np.diff(seq, prepend=-1))
    return starts, np.diff(np.append(starts, len(seq)))


def read_token_rows(tokens_path, start: int, stop: int, columns: list[str]) -> dict[str, np.ndarray]:
    """Rows start..stop-1 of tokens.parquet, reading only the row groups that overlap them."""
    parquet = storage.open_parquet(tokens_path, columns)
    groups, first_row, row = [], None, 0
    for index in range(parquet.num_row_groups):
        n = parquet.metadata.row_group(index).num_rows
        if row < stop and row + n > start:
            groups.append(index)
            first_row = row if first_row is None else first_row
        row += n
    with storage.parquet_errors(tokens_path):
        table = parquet.read_row_groups(groups, columns=columns)
    table = table.slice(start - first_row, stop - start)
    return {name: table.column(name).to_numpy() for name in columns}
