"""Capture hook points for one chunk of sequences, and each hook's mean vector.

Row t of a hook's chunk is the hook's value (see saeflow.hooks) with the model run on token t's
sequence. Sequences are batched by length (longest first) and right-padded under an attention
mask, so batching changes no row: each equals the sequence run alone, within the storage dtype's
precision. All hooks of a chunk come from one forward pass per batch.
"""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np

from saeflow import storage
from saeflow.chunks import Chunk, read_token_rows, sequence_bounds
from saeflow.errors import SaeflowError

log = logging.getLogger(__name__)

STORE_DTYPES = ("float16", "float32")
_ROWS_PER_READ = 8192


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Sequence indices in batches of similar length, so padding wastes little compute."""
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def padded_batch(token_ids: np.ndarray, seq_starts: np.ndarray, lengths: np.ndarray, batch: np.ndarray):
    """(input_ids, attention_mask) [len(batch), longest] for the given sequences, right-padded."""
    import torch

    width = int(lengths[batch].max())
    input_ids = torch.zeros((len(batch), width), dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, seq in enumerate(batch):
        start, n = seq_starts[seq], lengths[seq]
        input_ids[row, :n] = torch.from_numpy(token_ids[start : start + n].astype(np.int64))
        attention_mask[row, :n] = 1
    return input_ids, attention_mask


def forward_hooks(model, hooks: dict, token_ids: np.ndarray, seq_starts: np.ndarray, lengths: np.ndarray,
                  batch_size: int, dtype: str, progress=None) -> dict[str, np.ndarray]:
    """{name: [n_tokens, width] in `dtype`} for every token of the given sequences, one forward
    pass per batch for all hooks; non-finite values are an error naming the hook."""
    import torch

    from saeflow.hooks import capture

    device = next(model.parameters()).device
    out: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for batch in length_sorted_batches(lengths, batch_size):
            input_ids, attention_mask = padded_batch(token_ids, seq_starts, lengths, batch)
            values = capture(model, hooks, input_ids.to(device), attention_mask.to(device))
            real = attention_mask.numpy().astype(bool)  # padding positions are dropped unread
            dest = np.concatenate([np.arange(seq_starts[seq], seq_starts[seq] + lengths[seq]) for seq in batch])
            for name, value in values.items():
                exact = value.float().cpu().numpy()[real]
                with np.errstate(over="ignore"):  # overflow is reported below, with its fix
                    stored = exact.astype(dtype)
                if not np.isfinite(stored).all():
                    hint = " (float16 overflow: set activations.dtype to float32)" if np.isfinite(exact).all() else ""
                    raise SaeflowError(f"hooks.{name}: the model produced non-finite activations at "
                                       f"{hooks[name]}{hint}")
                out.setdefault(name, np.empty((len(token_ids), stored.shape[-1]), dtype=dtype))[dest] = stored
            if progress is not None:
                progress.update(int(lengths[batch].sum()))
    return out


def capture_chunk(model, model_name: str, tokens_path, chunk: Chunk, hooks: dict, out_paths: dict,
                  batch_size: int = 32, dtype: str = "float16", progress=None) -> None:
    """Write each hook's `chunk-NNNN.zarr` (array `acts` [n_tokens, width]) for one chunk of the
    plan, from one forward pass per batch for all hooks."""
    if dtype not in STORE_DTYPES:
        raise SaeflowError(f"activations.dtype: {dtype!r} is not one of {STORE_DTYPES}")
    rows = read_token_rows(tokens_path, chunk.token_start, chunk.token_stop, ["seq", "token_id"])
    seq_starts, lengths = sequence_bounds(rows["seq"])
    acts = forward_hooks(model, hooks, rows["token_id"], seq_starts, lengths, batch_size, dtype, progress)
    for name, spec in hooks.items():
        attrs = {"model": model_name, "hook": spec, "token_start": chunk.token_start, "dtype": dtype}
        with storage.ZarrChunkWriter(out_paths[name], attrs) as store:
            store.create("acts", acts[name].shape, dtype)[:] = acts[name]
    log.info("%s: %d tokens, %d sequences, hooks %s, %s", chunk.id, chunk.n_tokens, len(lengths),
             ", ".join(hooks), dtype)


def open_dense_chunk(chunk_path, d_in: int | None = None):
    """An activation chunk's Zarr group after checking it against the contract: a 2-D `acts` in a
    storage dtype, attrs `token_start` (a count) and `dtype` where given (the array's), and with
    `d_in`, that width."""
    group = storage.open_zarr_group(chunk_path, attrs=("token_start",), arrays=("acts",))
    acts = group["acts"]
    if len(acts.shape) != 2 or str(acts.dtype) not in STORE_DTYPES:
        raise storage.damaged(chunk_path, f"`acts` is {len(acts.shape)}-D {acts.dtype}, not [n_tokens, d] "
                              f"in one of {STORE_DTYPES}")
    if group.attrs.get("dtype", str(acts.dtype)) != str(acts.dtype):
        raise storage.damaged(chunk_path, f"attribute 'dtype' is {group.attrs.get('dtype')!r}, but `acts` "
                              f"is {acts.dtype}")
    if d_in is not None and acts.shape[1] != d_in:
        raise storage.damaged(chunk_path, f"`acts` has width {acts.shape[1]}, but {d_in} is expected")
    return group


def iter_chunk_rows(chunk_path, rows_per_read: int = _ROWS_PER_READ, d_in: int | None = None) -> Iterator[np.ndarray]:
    """Stream a chunk's activations as float32 blocks, with a clear error for damaged or bad data."""
    group = open_dense_chunk(chunk_path, d_in)
    n_rows = group["acts"].shape[0]
    for start in range(0, n_rows, rows_per_read):
        block = storage.read_zarr_array(group, "acts", slice(start, start + rows_per_read)).astype(np.float32)
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise storage.damaged(chunk_path, f"non-finite activation (NaN or inf) in row {bad}",
                                  "delete the chunk and rerun the workflow to recapture it")
        yield block


def hook_mean(chunk_paths: list, out_path) -> np.ndarray:
    """Mean over all rows of all chunks as stored, accumulated in float64; writes mean.safetensors."""
    total, n_tokens = None, 0
    for path in chunk_paths:
        for block in iter_chunk_rows(path):
            block_sum = block.sum(axis=0, dtype=np.float64)
            total = block_sum if total is None else total + block_sum
            n_tokens += len(block)
    if not n_tokens:
        raise SaeflowError(f"{out_path}: no activation rows in {len(chunk_paths)} chunks")
    mean = total / n_tokens
    norm = np.linalg.norm(mean)
    storage.write_safetensors(
        out_path,
        {"mean": mean.astype(np.float32), "mean_normalized": (mean / norm if norm else mean).astype(np.float32)},
        {"n_tokens": n_tokens},
    )
    return mean
