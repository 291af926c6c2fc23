"""The evaluate_sae job: held-out measures of a saved SAE under its inference encoding (FVU, L0,
dead fraction), and for causal LMs the CE loss with the SAE spliced into the model (clean vs
spliced vs zero-ablated); and the sweep's metrics table."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import torch

from saeflow import storage
from saeflow.activations import length_sorted_batches, padded_batch
from saeflow.batches import iter_kept_rows, special_row_offsets
from saeflow.chunks import Chunk, read_token_rows
from saeflow.model import is_causal_lm, load_model, n_layers
from saeflow.sae import BatchTopKSAE
from saeflow.splice import replaced_hidden_states

log = logging.getLogger(__name__)


def evaluate_sae_job(sae_dir, holdout_path, holdout: Chunk, tokens_path, model_path: str, out_path,
                     device: str = "cpu") -> dict:
    """eval.json of the SAE in `sae_dir` on the held-out chunk (special-token rows out where the
    SAE left them out of training), run on `device`."""
    sae, cfg = BatchTopKSAE.load(sae_dir)
    sae = sae.to(device)
    excluded = special_row_offsets(holdout_path, tokens_path) if cfg["exclude_special_tokens"] else None
    metrics = reconstruction_metrics(sae, holdout_path, excluded)
    if is_causal_lm(model_path):
        lm = load_model(model_path, device, with_lm_head=True)
        metrics |= spliced_ce(sae, lm, cfg["layer"], n_layers(model_path), tokens_path, holdout)
    storage.write_json(out_path, metrics)
    log.info("%s: held-out %s", cfg["name"], metrics)
    return metrics


def reconstruction_metrics(sae, chunk_path, excluded_rows: np.ndarray | None = None) -> dict:
    """FVU against the held-out mean, L0 of the SAE's inference encoding, never-active fraction."""
    d_sae = sae.W_enc.shape[1]
    device = sae.W_enc.device
    fired = torch.zeros(d_sae, dtype=torch.bool, device=device)
    n = 0
    sum_x = sum_sq = sse = nonzeros = 0.0
    with torch.inference_mode():
        for block in iter_kept_rows(chunk_path, excluded_rows):
            x = torch.from_numpy(block).to(device)
            dense = sae.encode(x)
            sse += float(((sae.decode(dense) - x).double() ** 2).sum())
            sum_x = sum_x + x.double().sum(0)
            sum_sq += float((x.double() ** 2).sum())
            active = dense > 0
            nonzeros += float(active.sum())
            fired |= active.any(0)
            n += len(x)
    total_variance = sum_sq - float((sum_x**2).sum()) / n
    return {
        "holdout_tokens": n,
        "fvu": sse / total_variance,
        "l0": nonzeros / n,
        "dead_fraction": 1 - float(fired.float().mean()),
    }


def _sequences(tokens_path, chunk: Chunk, max_sequences: int):
    rows = read_token_rows(tokens_path, chunk.token_start, chunk.token_stop, ["seq", "token_id"])
    starts = np.flatnonzero(np.diff(rows["seq"], prepend=-1))[:max_sequences]
    lengths = np.diff(np.append(starts, len(rows["seq"])))[: len(starts)]
    return rows["token_id"].astype(np.int64), starts, lengths


def _mean_next_token_ce(model, token_ids, starts, lengths, batch_size: int) -> float:
    """Mean cross-entropy of next-token prediction over all predicted positions."""
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for batch in length_sorted_batches(lengths, batch_size):
        ids, mask = padded_batch(token_ids, starts, lengths, batch)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        targets = ids[:, 1:].to(device).masked_fill(mask[:, 1:].to(device) == 0, -100)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
        )
        total += float(loss)
        count += int((targets != -100).sum())
    return total / count


def spliced_ce(sae, lm, layer: int, n_layers: int, tokens_path, chunk: Chunk,
               max_sequences: int = 128, batch_size: int = 16) -> dict:
    """CE loss of a causal LM on held-out sequences: clean, with the SAE's reconstruction in
    place of hidden_states[layer], and with zeros there; and the fraction of CE recovered."""
    token_ids, starts, lengths = _sequences(tokens_path, chunk, max_sequences)
    sae_device = sae.W_enc.device

    def reconstruct(hidden):
        flat = hidden.reshape(-1, hidden.shape[-1]).to(sae_device, torch.float32)
        return sae(flat).reshape(hidden.shape).to(hidden.device, hidden.dtype)

    with torch.inference_mode():
        clean = _mean_next_token_ce(lm, token_ids, starts, lengths, batch_size)
        with replaced_hidden_states(lm, layer, n_layers, reconstruct):
            spliced = _mean_next_token_ce(lm, token_ids, starts, lengths, batch_size)
        with replaced_hidden_states(lm, layer, n_layers, torch.zeros_like):
            zero = _mean_next_token_ce(lm, token_ids, starts, lengths, batch_size)
    recovered = (zero - spliced) / (zero - clean) if zero != clean else None
    log.info("CE on %d held-out sequences: clean %.4f, spliced %.4f, zero %.4f", len(starts), clean, spliced, zero)
    return {"ce_clean": clean, "ce_spliced": spliced, "ce_zero": zero, "ce_recovered": recovered}


def gather_metrics(names: list[str], eval_paths: list, cfg_paths: list, out_path) -> None:
    """results/saes/metrics.parquet: one row per SAE with its hook, size and every eval.json key."""
    rows = []
    for name, eval_path, cfg_path in zip(names, eval_paths, cfg_paths):
        cfg = storage.read_json(cfg_path)
        rows.append({"name": name, "hook": cfg["hook"], "d_sae": cfg["d_sae"], "k": cfg["k"],
                     **storage.read_json(eval_path)})
    keys = list(dict.fromkeys(key for row in rows for key in row))
    storage.write_table(out_path, pa.Table.from_pylist([{key: row.get(key) for key in keys} for row in rows]))
