"""The train_sae job: fit one configured SAE to its hook's training chunks and write its weights,
cfg.json and training log. Evaluation is a job of its own (saeflow.evaluate), on the held-out
chunk, so it can be redone without retraining.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa

from saeflow import storage
from saeflow.activations import open_dense_chunk
from saeflow.batches import batch_source, special_row_offsets
from saeflow.config import sae_width
from saeflow.errors import SaeflowError
from saeflow.trainer import TrainConfig, train_sae, unit_mean_squared_norm_scale

log = logging.getLogger(__name__)

LOG_COLUMNS = ("step", "tokens_seen", "loss", "mse", "aux_loss", "fvu", "l0", "dead_fraction", "threshold")
LOG_SCHEMA = pa.schema([(c, pa.int64() if c in ("step", "tokens_seen") else pa.float64()) for c in LOG_COLUMNS])
_INIT_SAMPLE_ROWS = 16384


@dataclass(frozen=True)
class TrainOutputs:
    directory: Path  # sae_weights.safetensors and cfg.json go here
    training_log: Path
    checkpoint: Path


def check_chunks(chunk_paths: list, hook: str, hook_spec, name: str) -> int:
    """The chunks' width, after checking that they hold the SAE's hook."""
    if not chunk_paths:
        raise SaeflowError(
            f"saes.{name}: no training chunk; the last activation chunk is held out for eval, so "
            "lower activations.tokens_per_chunk to get at least two chunks"
        )
    widths = set()
    for path in chunk_paths:
        group = open_dense_chunk(path)
        if group.attrs.get("hook") != hook_spec:
            raise SaeflowError(
                f"{path}: holds hook {group.attrs.get('hook')!r}, but saes.{name} reads {hook} = {hook_spec!r}; "
                "delete the chunk and rerun the workflow to recapture it"
            )
        widths.add(group["acts"].shape[1])
    if len(widths) > 1:
        raise SaeflowError(f"{Path(chunk_paths[0]).parent}: the training chunks have widths {sorted(widths)}; "
                           "delete them and rerun the workflow to recapture them")
    return widths.pop()


def train_config(settings: dict, d_sae: int) -> TrainConfig:
    train_tokens = settings["train_tokens"]
    dead_tokens = settings["dead_tokens"] or min(10_000_000, max(settings["batch_size"], train_tokens // 10))
    return TrainConfig(
        k=settings["k"], d_sae=d_sae, total_tokens=train_tokens, lr=settings["lr"],
        batch_size=settings["batch_size"], dead_tokens=dead_tokens, aux_k=settings["aux_k"],
        aux_coeff=settings["aux_coeff"], max_grad_norm=settings["max_grad_norm"],
        encoding=settings["encoding"], seed=settings["seed"], b_dec_init=settings["b_dec_init"],
        checkpoint_every=settings["checkpoint_every"], log_every=settings["log_every"],
    )


def train_sae_job(name: str, settings: dict, hook: str, hook_spec, chunk_paths: list, tokens_path,
                  model_name: str, outputs: TrainOutputs, device: str = "cpu", progress=None,
                  stop_after_steps: int | None = None) -> None:
    """Train on `chunk_paths` (special-token rows left out where settings say so); write the SAE
    folder and training_log.parquet, then drop the checkpoint. With stop_after_steps (a test
    hook) it stops there as if killed: checkpoint kept, nothing written."""
    d_in = check_chunks(chunk_paths, hook, hook_spec, name)
    d_sae = sae_width(name, settings, d_in)
    cfg = train_config(settings, d_sae)
    excluded = ([special_row_offsets(path, tokens_path) for path in chunk_paths]
                if settings["exclude_special_tokens"] else None)
    source = batch_source(chunk_paths, cfg.batch_size, settings["shuffle_buffer_tokens"], cfg.seed, excluded)
    # The stream's first batches (special tokens already out) scale the input and place b_dec.
    init_sample = np.concatenate(list(islice(source(0), max(1, _INIT_SAMPLE_ROWS // cfg.batch_size))))
    scale = unit_mean_squared_norm_scale(init_sample)
    log.info("%s: hook %s, d_in %d, d_sae %d, k %d, %d steps of %d tokens, input scale %.4g, %s encoding",
             name, hook, d_in, d_sae, cfg.k, cfg.total_steps, cfg.batch_size, scale, cfg.encoding)

    sae, log_rows = train_sae(source, d_in, cfg, init_sample=init_sample, input_scale=scale,
                              checkpoint_dir=outputs.checkpoint, stop_after_steps=stop_after_steps,
                              progress=progress, device=device)
    if stop_after_steps is not None and stop_after_steps < cfg.total_steps:
        return
    sae.save(outputs.directory, {
        "name": name, "model": model_name, "hook": hook, "hook_spec": hook_spec,
        **({"layer": settings["layer"]} if "layer" in settings else {}),
        "seed": cfg.seed, "train_tokens": cfg.total_tokens, "input_scale": scale,
        "exclude_special_tokens": settings["exclude_special_tokens"],
    })
    storage.write_parquet(outputs.training_log, {c: [row[c] for row in log_rows] for c in LOG_COLUMNS}, LOG_SCHEMA)
    shutil.rmtree(outputs.checkpoint, ignore_errors=True)
    log.info("%s: trained; θ = %.4g (raw units)", name, float(sae.threshold[0]))
