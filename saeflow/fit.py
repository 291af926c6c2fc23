"""Fit one configured SAE to a layer's activation chunks and write its four artifacts.

The last chunk of the plan is held out: training streams shuffled batches from the others, and
`eval.json` is measured on the held-out chunk only.
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
from saeflow.batches import batch_source
from saeflow.chunks import Chunk
from saeflow.config import sae_width
from saeflow.errors import SaeflowError
from saeflow.evaluate import reconstruction_metrics, spliced_ce
from saeflow.model import is_causal_lm, load_model, n_layers
from saeflow.train import TrainConfig, train_sae, unit_mean_squared_norm_scale

log = logging.getLogger(__name__)

LOG_COLUMNS = ("step", "tokens_seen", "loss", "mse", "aux_loss", "fvu", "l0", "dead_fraction")
_INIT_SAMPLE_ROWS = 16384


@dataclass(frozen=True)
class SaeOutputs:
    directory: Path  # sae_weights.safetensors and cfg.json go here
    training_log: Path
    eval: Path
    checkpoint: Path


def check_chunks(chunk_paths: list, layer: int, name: str) -> int:
    """The chunks' d_model, after checking that they hold the SAE's layer."""
    if len(chunk_paths) < 2:
        raise SaeflowError(
            f"saes.{name}: the corpus fills only {len(chunk_paths)} activation chunk; training holds "
            "out the last chunk, so lower activations.tokens_per_chunk to get at least two"
        )
    widths = set()
    for path in chunk_paths:
        group = storage.open_zarr_group(path)
        if group.attrs.get("layer") != layer:
            raise SaeflowError(
                f"{path}: holds layer {group.attrs.get('layer')}, but saes.{name}.layer is {layer}; "
                "capture that layer (it is captured for every layer an SAE names) and retrain"
            )
        widths.add(group["acts"].shape[1])
    return widths.pop()


def train_config(settings: dict, d_sae: int) -> TrainConfig:
    train_tokens = settings["train_tokens"]
    dead_tokens = settings.get("dead_tokens") or min(10_000_000, max(settings["batch_size"], train_tokens // 10))
    return TrainConfig(
        k=settings["k"], d_sae=d_sae, total_tokens=train_tokens, lr=settings.get("lr"),
        batch_size=settings["batch_size"], dead_tokens=dead_tokens, aux_k=settings.get("aux_k"),
        aux_coeff=settings["aux_coeff"], seed=settings["seed"], b_dec_init=settings["b_dec_init"],
        checkpoint_every=settings["checkpoint_every"], log_every=settings["log_every"],
    )


def fit_sae(name: str, settings: dict, chunk_paths: list, holdout: Chunk, tokens_path, model_path: str,
            outputs: SaeOutputs, device: str = "cpu", progress=None, stop_after_steps: int | None = None) -> dict:
    layer = settings["layer"]
    d_in = check_chunks(chunk_paths, layer, name)
    d_sae = sae_width(name, settings, d_in)
    cfg = train_config(settings, d_sae)
    train_paths, holdout_path = chunk_paths[:-1], chunk_paths[-1]
    source = batch_source(train_paths, cfg.batch_size, settings["shuffle_buffer_tokens"], cfg.seed)
    init_sample = np.concatenate(list(islice(source(0), max(1, _INIT_SAMPLE_ROWS // cfg.batch_size))))
    scale = unit_mean_squared_norm_scale(init_sample)
    log.info("%s: layer %d, d_in %d, d_sae %d, k %d, %d steps of %d tokens, input scale %.4g",
             name, layer, d_in, d_sae, cfg.k, cfg.total_steps, cfg.batch_size, scale)

    sae, log_rows = train_sae(source, d_in, cfg, init_sample=init_sample, input_scale=scale,
                              checkpoint_dir=outputs.checkpoint, stop_after_steps=stop_after_steps,
                              progress=progress, device=device)
    if stop_after_steps is not None and stop_after_steps < cfg.total_steps:
        return {}  # the test hook: stopped as if killed, checkpoint kept, no artifact written

    metrics = reconstruction_metrics(sae, [holdout_path])
    if is_causal_lm(model_path):
        lm = load_model(model_path, device, with_lm_head=True)
        metrics |= spliced_ce(sae.to(device), lm, layer, n_layers(model_path), tokens_path, holdout)
        sae = sae.cpu()
    sae.save(outputs.directory, {"name": name, "model": model_path, "layer": layer, "seed": cfg.seed,
                                 "hook_name": f"hidden_states.{layer}", "train_tokens": cfg.total_tokens,
                                 "input_scale": scale})
    storage.write_parquet(outputs.training_log, {c: [row[c] for row in log_rows] for c in LOG_COLUMNS},
                          pa.schema([(c, pa.int64() if c in ("step", "tokens_seen") else pa.float64())
                                     for c in LOG_COLUMNS]))
    storage.write_json(outputs.eval, metrics)
    shutil.rmtree(outputs.checkpoint, ignore_errors=True)
    log.info("%s: held-out %s", name, metrics)
    return metrics


def gather_metrics(names: list[str], eval_paths: list, cfg_paths: list, out_path) -> None:
    """results/saes/metrics.parquet: one row per SAE with its size and every eval.json key."""
    rows = []
    for name, eval_path, cfg_path in zip(names, eval_paths, cfg_paths):
        cfg = storage.read_json(cfg_path)
        rows.append({"name": name, "layer": cfg["layer"], "d_sae": cfg["d_sae"], "k": cfg["k"],
                     **storage.read_json(eval_path)})
    keys = list(dict.fromkeys(key for row in rows for key in row))
    table = pa.Table.from_pylist([{key: row.get(key) for key in keys} for row in rows])
    storage.write_parquet(out_path, {c: table.column(c) for c in table.column_names}, table.schema)
