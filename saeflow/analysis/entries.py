"""The active (token, feature, value) entries of a shard of features of the CSC store.

Every per-feature kernel starts from these flat arrays and takes them in any order; several have
a shortcut for a shard's own (feature-major, tokens ascending).
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
