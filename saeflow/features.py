"""The sparse feature store: each token's top-k SAE latents, and its feature-major transpose.

`encode_chunk` writes `features/chunk-NNNN.zarr` (token-major, `indices`/`values` [n, k]);
`transpose_store` streams all chunks into `by_feature.zarr` (CSC: `indptr`, `token`, `value`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from zarr.codecs.numcodecs import Delta

from saeflow import storage
from saeflow.activations import iter_chunk_rows
from saeflow.errors import SaeflowError

log = logging.getLogger(__name__)

VALUE_DTYPES = ("float32", "float16")


def sparse_topk(sae, acts_ND: np.ndarray, value_dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-token top-k (indices, values); zero entries become padding (index −1), rows sorted by index.

    Sorting each row's indices makes neighbouring entries close in value, which the delta
    filter and zstd then store in a byte or two.
    """
    with torch.inference_mode():
        values, indices = sae.encode_per_token(torch.from_numpy(acts_ND).to(sae.W_enc.device))
    values = values.cpu().numpy().astype(value_dtype)
    indices = np.where(values > 0, indices.cpu().numpy(), -1).astype(np.int32)
    values = np.where(indices >= 0, values, 0).astype(value_dtype)
    order = np.argsort(indices, axis=1, kind="stable")
    return np.take_along_axis(indices, order, axis=1), np.take_along_axis(values, order, axis=1)


def encode_chunk(sae, acts_path, out_path, value_dtype: str = "float32", progress=None) -> None:
    """Encode one dense activation chunk into its sparse top-k chunk (same token range)."""
    if value_dtype not in VALUE_DTYPES:
        raise SaeflowError(f"features.dtype: {value_dtype!r} is not one of {VALUE_DTYPES}")
    group = storage.open_zarr_group(acts_path)
    n_rows, d_in = group["acts"].shape
    if d_in != sae.W_enc.shape[0]:
        raise SaeflowError(f"{acts_path}: d_model {d_in} does not match the SAE's d_in {sae.W_enc.shape[0]}")
    k = sae.k
    attrs = {"format": "sparse_topk", "topk": k, "n_features": int(sae.W_enc.shape[1]),
             "token_start": int(group.attrs["token_start"])}
    with storage.ZarrChunkWriter(out_path, attrs) as store:
        indices_out = store.create("indices", (n_rows, k), "int32", filters=[Delta(dtype="int32")])
        values_out = store.create("values", (n_rows, k), value_dtype)
        row = 0
        for block in iter_chunk_rows(acts_path):
            indices, values = sparse_topk(sae, block, value_dtype)
            indices_out[row : row + len(block)] = indices
            values_out[row : row + len(block)] = values
            row += len(block)
            if progress is not None:
                progress.update(len(block))
    log.info("%s: %d tokens encoded, %d active entries", out_path, n_rows, int((values_out[:] > 0).sum()))


def _feature_counts(chunk_paths, n_features: int) -> tuple[np.ndarray, int, np.dtype]:
    counts = np.zeros(n_features, dtype=np.int64)
    n_tokens, value_dtype = 0, None
    for path in chunk_paths:
        group = storage.open_zarr_group(path)
        indices = storage.read_zarr_array(group, "indices")
        counts += np.bincount(indices[indices >= 0], minlength=n_features)
        n_tokens += len(indices)
        value_dtype = group["values"].dtype
    return counts, n_tokens, value_dtype


def _feature_groups(indptr: np.ndarray, max_entries: int) -> list[tuple[int, int]]:
    """Contiguous feature ranges each holding at most `max_entries` entries (or one feature)."""
    groups, start = [], 0
    n_features = len(indptr) - 1
    while start < n_features:
        stop = int(np.searchsorted(indptr, indptr[start] + max_entries, side="right")) - 1
        stop = min(max(stop, start + 1), n_features)
        groups.append((start, stop))
        start = stop
    return groups


def _stable_order(local_ids: np.ndarray, width: int) -> np.ndarray:
    """Stable argsort of group-relative feature ids; uint16 ids let numpy use its radix sort."""
    return np.argsort(local_ids.astype(np.uint16 if width <= 1 << 16 else np.int64), kind="stable")


def transpose_store(chunk_paths: list, out_path, n_features: int, max_entries: int = 1 << 24) -> None:
    """Write the feature-major (CSC) copy of all sparse chunks.

    Features are taken in groups whose entries fit the budget, and each group is one pass over
    the chunks: each chunk's entries go straight to their place in the group's buffers (a
    counting sort: indptr already says where each feature starts), so memory is the group's
    12 bytes per entry (`max_entries` at most) plus one chunk, whatever the store's size.
    Chunks come in token order, so each feature's tokens stay sorted.
    """
    counts, n_tokens, value_dtype = _feature_counts(chunk_paths, n_features)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    nnz = int(indptr[-1])
    groups = _feature_groups(indptr, max_entries)
    with storage.ZarrChunkWriter(out_path, {"n_features": n_features, "n_tokens": n_tokens}) as store:
        store.create("indptr", indptr.shape, "int64")[:] = indptr
        tokens_out = store.create("token", (nnz,), "int64", rows_per_chunk=1 << 20, filters=[Delta(dtype="int64")])
        values_out = store.create("value", (nnz,), value_dtype, rows_per_chunk=1 << 20)
        for first, stop in groups:
            lo, hi = int(indptr[first]), int(indptr[stop])
            if hi == lo:
                continue
            group_tokens = np.empty(hi - lo, dtype=np.int64)
            group_values = np.empty(hi - lo, dtype=value_dtype)
            cursor = indptr[first:stop] - lo  # next free slot of each feature in the buffers
            for path in chunk_paths:
                indices, chunk_values, token_start = storage.read_sparse_chunk(path)
                rows, slots = np.nonzero((indices >= first) & (indices < stop))
                local = indices[rows, slots] - first
                order = _stable_order(local, stop - first)
                local = local[order]
                run_start = np.flatnonzero(np.diff(local, prepend=-1))
                rank = np.arange(len(local)) - np.repeat(run_start, np.diff(np.append(run_start, len(local))))
                slot = cursor[local] + rank
                group_tokens[slot] = rows[order] + token_start
                group_values[slot] = chunk_values[rows[order], slots[order]]
                cursor += np.bincount(local, minlength=stop - first)
            tokens_out[lo:hi] = group_tokens
            values_out[lo:hi] = group_values
    log.info("by_feature: %d features, %d tokens, %d entries in %d feature groups",
             n_features, n_tokens, nnz, len(groups))
