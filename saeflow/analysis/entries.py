"""The active (token, feature, value) entries of a sparse chunk or a CSC feature shard.

Every per-token kernel starts from these flat arrays, so it works the same whether the caller
streams token-major chunks or reads a feature-major shard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saeflow.errors import SaeflowError


@dataclass(frozen=True)
class Entries:
    """Nonzero activations; features are global ids in [first_feature, first_feature + n_features)."""

    token: np.ndarray  # int64, global token index
    feature: np.ndarray  # int64, global feature id
    value: np.ndarray  # float32 (a float16 store is widened, as the contract says)
    first_feature: int
    n_features: int

    @property
    def local(self) -> np.ndarray:
        """Feature ids relative to first_feature: the row in per-feature outputs."""
        return self.feature - self.first_feature


def chunk_entries(indices: np.ndarray, values: np.ndarray, token_start: int, n_features: int) -> Entries:
    """Entries of a sparse top-k chunk ([n, k] indices and values), sorted by token."""
    indices = np.asarray(indices)
    values = np.asarray(values)
    if indices.ndim != 2 or indices.shape != values.shape:
        raise SaeflowError(
            f"sparse chunk arrays must both be [n_tokens, k]; got indices {indices.shape}, values {values.shape}"
        )
    # Padding is index -1 with value 0; a value that rounded to 0 is not an activation either.
    row, col = np.nonzero((indices >= 0) & (values != 0))
    feature = indices[row, col].astype(np.int64)
    if feature.size and feature.max() >= n_features:
        raise SaeflowError(f"sparse chunk has feature id {feature.max()} but n_features is {n_features}")
    return Entries(
        token=token_start + row.astype(np.int64),
        feature=feature,
        value=values[row, col].astype(np.float32),
        first_feature=0,
        n_features=n_features,
    )


def csc_entries(indptr: np.ndarray, token: np.ndarray, value: np.ndarray, first_feature: int = 0) -> Entries:
    """Entries of features first_feature .. first_feature + len(indptr) - 2 of the CSC store.

    `indptr` may be a slice of the store's indptr: entry j of `token`/`value` is store entry
    indptr[0] + j, so a shard is read as indptr[a:b+1] with token/value[indptr[a]:indptr[b]].
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    token = np.asarray(token)
    value = np.asarray(value)
    counts = np.diff(indptr)
    if indptr.ndim != 1 or indptr.size == 0 or (counts < 0).any():
        raise SaeflowError("CSC indptr must be a non-empty, non-decreasing 1-D array")
    if token.shape != value.shape or token.shape != (indptr[-1] - indptr[0],):
        raise SaeflowError(
            f"CSC shard has {token.shape} tokens and {value.shape} values but indptr spans {indptr[-1] - indptr[0]}"
        )
    feature = first_feature + np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    active = value != 0
    if active.all():  # the usual case: skip three masked copies
        active = slice(None)
    return Entries(
        token=token[active].astype(np.int64),
        feature=feature[active],
        value=value[active].astype(np.float32),
        first_feature=first_feature,
        n_features=counts.size,
    )
