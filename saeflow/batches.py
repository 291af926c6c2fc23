"""Shuffled training batches streamed from activation chunks through a bounded buffer.

The stream never holds more than the buffer plus one read block: chunks are visited in a
seeded random order each epoch, their rows pour into a buffer of `buffer_tokens` rows, and each
batch takes `batch_size` random buffer rows, which the next incoming rows replace. The stream
is a pure function of the seed, so a resumed run replays it to the batch it stopped at.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from saeflow.activations import iter_chunk_rows, open_dense_chunk
from saeflow.chunks import read_token_rows


def special_row_offsets(chunk_path, tokens_path) -> np.ndarray:
    """Offsets (rows within the activation chunk) of the tokens the tokenizer added (BOS, CLS,
    SEP, ...), from the `special` column of tokens.parquet: what iter_kept_rows leaves out."""
    group = open_dense_chunk(chunk_path)
    start = int(group.attrs["token_start"])
    special = read_token_rows(tokens_path, start, start + group["acts"].shape[0], ["special"])["special"]
    return np.flatnonzero(special)


def iter_kept_rows(chunk_path, excluded_rows: np.ndarray | None = None, d_in: int | None = None
                   ) -> Iterator[np.ndarray]:
    """A chunk's rows as float32 blocks, without the rows at offsets `excluded_rows` (e.g. the
    special tokens, which SAEs leave out of training by default); with `d_in`, checked to be that
    wide."""
    start = 0
    for block in iter_chunk_rows(chunk_path, d_in=d_in):
        stop = start + len(block)
        if excluded_rows is not None and len(excluded_rows):
            inside = excluded_rows[(excluded_rows >= start) & (excluded_rows < stop)]
            block = np.delete(block, inside - start, axis=0)
        start = stop
        yield block


def _rows_forever(chunk_paths: list, excluded: list, rng: np.random.Generator) -> Iterator[np.ndarray]:
    while True:
        for index in rng.permutation(len(chunk_paths)):
            yield from iter_kept_rows(chunk_paths[index], excluded[index])


def shuffled_batches(chunk_paths: list, batch_size: int, buffer_tokens: int, seed: int,
                     excluded: list | None = None) -> Iterator[np.ndarray]:
    """An endless stream of float32 batches [batch_size, d_model] of shuffled rows; excluded[i]
    (row offsets, or None) are left out of chunk i."""
    rng = np.random.default_rng(seed)
    blocks = _rows_forever(chunk_paths, excluded or [None] * len(chunk_paths), rng)
    pending = np.empty((0, 0), dtype=np.float32)

    def take(n: int) -> np.ndarray:
        nonlocal pending
        parts, have = [], 0
        while have < n:
            if not len(pending):
                pending = next(blocks)
            part, pending = pending[: n - have], pending[n - have :]
            parts.append(part)
            have += len(part)
        return np.concatenate(parts)

    buffer = take(max(buffer_tokens, batch_size))
    while True:
        picked = rng.choice(len(buffer), size=batch_size, replace=False)
        yield buffer[picked].copy()
        buffer[picked] = take(batch_size)


def batch_source(chunk_paths: list, batch_size: int, buffer_tokens: int, seed: int,
                 excluded: list | None = None) -> Callable[[int], Iterator[np.ndarray]]:
    """`source(start_step)`: the stream from batch number `start_step` on (for resuming)."""

    def source(start_step: int) -> Iterator[np.ndarray]:
        stream = shuffled_batches(chunk_paths, batch_size, buffer_tokens, seed, excluded)
        for _ in range(start_step):
            next(stream)
        return stream

    return source

