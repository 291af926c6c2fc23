"""Small random sparse-activation problems: a dense matrix for brute-force oracles, and its entries,
CSR chunks and CSC shards for the code under test.

Every problem has a feature that never fires (0), one active on every token (1), tied values
(drawn from a few levels) and a sequence of a single token that forms a chunk on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saeflow.analysis.entries import Entries, csc_entries
from saeflow.decoder_tables import add_chunk_cooccurrences
from saeflow.storage import SparseChunk

LEVELS = np.array([0.5, 1.0, 1.5, 2.0, 3.0], dtype=np.float32)


@dataclass
class Problem:
    dense: np.ndarray  # [n_tokens, n_features] float32, 0 = inactive
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
        """Entries of tokens start .. stop-1 in token order, which is no shard's: the kernels'
        general (sorting) paths."""
        row, feature = np.nonzero(self.dense[start:stop])
        return Entries(start + row, feature, self.dense[start + row, feature], 0, self.n_features)

    def chunk(self, start: int, stop: int) -> SparseChunk:
        """Tokens start .. stop-1 as the CSR chunk read_sparse_chunk returns."""
        row, feature = np.nonzero(self.dense[start:stop])  # row-major: ids ascend within each token
        indptr = np.concatenate(([0], np.cumsum(np.bincount(row, minlength=stop - start))))
        return SparseChunk(indptr, feature.astype(np.int32), self.dense[start + row, feature], start,
                           self.n_features, np.dtype(np.float32))

    def cooccurrences(self, block: range, bounds: list[tuple[int, int]] | None = None) -> np.ndarray:
        """Co-occurrence counts of the block's features, added chunk by chunk as decoder_tables does."""
        counts = np.zeros((len(block), self.n_features), dtype=np.int64)
        for start, stop in self.chunk_bounds() if bounds is None else bounds:
            add_chunk_cooccurrences(counts, self.chunk(start, stop), block.start)
        return counts

    def csc(self):
        feature, token = np.nonzero(self.dense.T)  # feature-major, tokens ascending
        indptr = np.concatenate(([0], np.cumsum(np.bincount(feature, minlength=self.n_features))))
        return indptr, token.astype(np.int64), self.dense[token, feature]

    def shard(self, first: int, stop: int) -> Entries:
        indptr, token, value = self.csc()
        lo, hi = indptr[first], indptr[stop]
        return csc_entries(indptr[first : stop + 1], token[lo:hi], value[lo:hi], first)


def make_problem(seed: int, n_features: int = 10, k: int = 4, n_seqs: int = 12, tied: bool = True) -> Problem:
    """At most k features active per token."""
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

    dense = np.zeros((n_tokens, n_features), dtype=np.float32)
    for t in range(n_tokens):
        others = rng.choice(np.arange(2, n_features), rng.integers(0, k), replace=False)
        dense[t, [1, *others]] = draw(others.size + 1)

    seq_starts = np.flatnonzero(np.diff(seq, prepend=-1))
    cut = rng.random(n_seqs) < 0.4
    cut[[single, min(single + 1, n_seqs - 1)]] = True
    return Problem(dense, seq, doc, sorted({0, *seq_starts[cut].tolist()}))
