"""The sparse feature store: each token's active SAE latents (CSR), and its feature-major transpose.

`encode_chunk` writes `features/chunk-NNNN.zarr` (token-major CSR: `indptr`, `indices`, `values`);
`transpose_store` streams all chunks into `by_feature.zarr` (CSC: `indptr`, `token`, `value`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from zarr.codecs.numcodecs import Delta

from saeflow import storage
from saeflow.activations import iter_chunk_rows, open_dense_chunk
from saeflow.errors import SaeflowError

log = logging.getLogger(__name__)

VALUE_DTYPES = ("float32", "float16")
# Rows encoded at once: the encoding is a dense [rows, d_sae] float32 block (and a few temporaries).
_ENCODE_BLOCK_BYTES = 1 << 27


def active_entries(sae, acts_ND: np.ndarray, value_dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR pieces of a block of tokens under the SAE's encoding: (entries per token, feature ids,
    values), token by token with ids ascending.

    Values are cast to the store's dtype before zeros are dropped, so a value that float16 rounds
    to 0 is not stored. Ascending ids are small steps, which the delta filter and zstd then store
    in a byte or two.
    """
    with torch.inference_mode():
        f_NF = sae.encode(torch.from_numpy(acts_ND).to(sae.W_enc.device)).to(getattr(torch, value_dtype))
        row, feature = f_NF.nonzero(as_tuple=True)  # row-major order: ids ascend within each token
        counts = torch.bincount(row, minlength=len(acts_ND))
        values = f_NF[row, feature]
    return counts.cpu().numpy(), feature.cpu().numpy().astype(np.int32), values.cpu().numpy()


def encode_chunk(sae, acts_path, out_path, value_dtype: str = "float32", progress=None) -> None:
    """Encode one dense activation chunk into its CSR feature chunk (same token range), streaming
    blocks of rows so that the chunk's dense encoding is never in memory at once."""
    if value_dtype not in VALUE_DTYPES:
        raise SaeflowError(f"features.dtype: {value_dtype!r} is not one of {VALUE_DTYPES}")
    group = open_dense_chunk(acts_path, d_in=int(sae.W_enc.shape[0]))
    n_rows, d_sae = group["acts"].shape[0], int(sae.W_enc.shape[1])
    rows_per_block = max(1, _ENCODE_BLOCK_BYTES // (4 * d_sae))
    token_start = int(group.attrs["token_start"])
    with storage.CsrChunkWriter(out_path, n_rows, d_sae, token_start, value_dtype) as out:
        for block in iter_chunk_rows(acts_path, rows_per_read=rows_per_block):
            counts, features, values = active_entries(sae, block, value_dtype)
            if not np.isfinite(values).all():  # readers refuse a store holding inf: stop here instead
                raise SaeflowError(f"features.dtype: an activation of {acts_path} overflows {value_dtype}; "
                                   "set features.dtype to float32")
            out.append(counts, features, values)
            if progress is not None:
                progress.update(len(block))
    log.info("%s: %d tokens encoded, %d active entries (L0 %.1f)", out_path, n_rows, out.nnz,
             out.nnz / max(n_rows, 1))


def _feature_counts(chunk_paths, n_features: int) -> tuple[np.ndarray, int, np.dtype]:
    counts = np.zeros(n_features, dtype=np.int64)
    n_tokens, value_dtype = 0, None
    for path in chunk_paths:
        chunk = storage.read_sparse_chunk(path, n_features)
        counts += np.bincount(chunk.indices, minlength=n_features)
        n_tokens += chunk.n_tokens
        value_dtype = chunk.value_dtype
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
    """Write the feature-major (CSC) copy of all CSR chunks.

    Features are taken in groups whose entries fit the budget, and each group is one pass over
    the chunks: each chunk's entries go straight to their place in the group's buffers (a
    counting sort: indptr already says where each feature starts), so memory is the group's
    12 bytes per entry (`max_entries` at most) plus one chunk, whatever the store's size.
    Chunks come in token order and a chunk's entries in token order, so each feature's tokens
    stay sorted.
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
                chunk = storage.read_sparse_chunk(path, n_features)
                entries = np.flatnonzero((chunk.indices >= first) & (chunk.indices < stop))
                local = chunk.indices[entries] - first
                order = _stable_order(local, stop - first)
                entries, local = entries[order], local[order]
                run_start = np.flatnonzero(np.diff(local, prepend=-1))
                rank = np.arange(len(local)) - np.repeat(run_start, np.diff(np.append(run_start, len(local))))
                slot = cursor[local] + rank
                group_tokens[slot] = chunk.entry_rows()[entries] + chunk.token_start
                group_values[slot] = chunk.values[entries]
                cursor += np.bincount(local, minlength=stop - first)
            tokens_out[lo:hi] = group_tokens
            values_out[lo:hi] = group_values
    log.info("by_feature: %d features, %d tokens, %d entries in %d feature groups",
             n_features, n_tokens, nnz, len(groups))
