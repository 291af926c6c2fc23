"""Small random sparse-activation problems with a dense copy for brute-force oracles.

Every problem has a feature that never fires (0), one active on every token (1), tied values
(drawn from a few levels) and a sequence of a single token that forms a chunk on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saeflow.analysis.entries import Entries, chunk_entries, csc_entries

LEVELS = np.array([0.5, 1.0, 1.5, 2.0, 3.0], dtype=np.float32)


@dataclass
class Problem:
    dense: np.ndarray  # [n_tokens, n_features] float32, 0 = inactive
    indices: np.ndarray  # [n_tokens, k] int32
    values: np.ndarray  # [n_tokens, k] float32
    seq: np.ndarray  # [n_tokens]
    doc: np.ndarray  # [n_tokens]
    chunk_starts: list[int]  # token index where each chunk starts (sequence boundaries)

    @property
    def n_tokens(self) -> int:
        return self.dense.shape[0]

    @property
    def n_features(self) -> int:
        return self.dense.shape[1]

    def chunk_bounds(self, starts=None) -> list[tuple[int, int]]:
        starts = sorted(set(self.chunk_starts if starts is None else [0, *starts]))
        return list(zip(starts, [*starts[1:], self.n_tokens]))

    def entries(self, start: int = 0, stop: int | None = None) -> Entries:
        stop = self.n_tokens if stop is None else stop
        return chunk_entries(self.indices[start:stop], self.values[start:stop], start, self.n_features)

    def csc(self):
        feature, token = np.nonzero(self.dense.T)  # feature-major, tokens ascending
        indptr = np.concatenate(([0], np.cumsum(np.bincount(feature, minlength=self.n_features))))
        return indptr, token.astype(np.int64), self.dense[token, feature]

    def shard(self, first: int, stop: int) -> Entries:
        indptr, token, value = self.csc()
        lo, hi = indptr[first], indptr[stop]
        return csc_entries(indptr[first : stop + 1], token[lo:hi], value[lo:hi], first)


def make_problem(seed: int, n_features: int = 10, k: int = 4, n_seqs: int = 12, tied: bool = True) -> Problem:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 7, n_seqs)
    single = int(rng.integers(n_seqs))
    lengths[single] = 1
    seq = np.repeat(np.arange(n_seqs), lengths)
    docs_of_seqs = np.cumsum(rng.random(n_seqs) < 0.5)
    doc = (docs_of_seqs - docs_of_seqs[0])[seq]
    n_tokens = seq.size

    def draw(n):
        return rng.choice(LEVELS, n) if tied else rng.uniform(0.05, 4.0, n).astype(np.float32)

    indices = np.full((n_tokens, k), -1, dtype=np.int32)
    values = np.zeros((n_tokens, k), dtype=np.float32)
    dense = np.zeros((n_tokens, n_features), dtype=np.float32)
    for t in range(n_tokens):
        others = rng.choice(np.arange(2, n_features), rng.integers(0, k), replace=False)
        active = np.concatenate(([1], others))
        slots = rng.choice(k, active.size, replace=False)
        indices[t, slots] = active
        values[t, slots] = draw(active.size)
        dense[t, active] = values[t, slots]

    seq_starts = np.flatnonzero(np.diff(seq, prepend=-1))
    cut = rng.random(n_seqs) < 0.4
    cut[[single, min(single + 1, n_seqs - 1)]] = True
    return Problem(dense, indices, values, seq, doc, sorted({0, *seq_starts[cut].tolist()}))
