"""Synthetic CSR feature chunks for the benchmarks: a threshold SAE's variable L0, Zipf-like densities."""

from __future__ import annotations

import numpy as np

L0, L0_SPREAD = 32, 15  # active features per token: the default SAE's k on average, 17..47


def token_l0s(rng, n) -> np.ndarray:
    """Active features of each of n tokens, uniform in L0 ± L0_SPREAD."""
    return rng.integers(L0 - L0_SPREAD, L0 + L0_SPREAD + 1, n)


def draw_csr(rng, cdf, row_l0) -> tuple[np.ndarray, np.ndarray]:
    """Each token's feature ids drawn from the cdf (over ids), a feature drawn twice on a token
    kept once: (entries per token, ids ascending within each token), as CSR."""
    n_features = len(cdf)
    ids = np.minimum(np.searchsorted(cdf, rng.random(row_l0.sum()) * cdf[-1], side="right"), n_features - 1)
    keys = np.unique(np.repeat(np.arange(len(row_l0), dtype=np.int64), row_l0) * n_features + ids)
    return np.bincount(keys // n_features, minlength=len(row_l0)), (keys % n_features).astype(np.int32)
