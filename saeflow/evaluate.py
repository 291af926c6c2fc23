"""The evaluate_sae job: held-out measures of a saved SAE under its inference encoding (FVU, L0,
dead fraction), and for causal LMs the CE loss with the SAE spliced into the model (clean vs
spliced vs zero-ablated); and the sweep's metrics table."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import torch

from saeflow import storage
from saeflow.activations import length_sorted_batches, padded_batch
from saeflow.batches import iter_kept_rows, special_row_offsets
from saeflow.chunks import Chunk, read_token_rows, sequence_bounds
from saeflow.hooks import replaceable, replaced
from saeflow.model import is_causal_lm, load_model
from saeflow.sae import BatchTopKSAE

log = logging.getLogger(__name__)


def evaluate_sae_job(sae_dir, holdout_path, holdout: Chunk, tokens_path, model_path: str, out_path,
                     device: str = "cpu", adapter=None, ce_sequences: int = 64) -> dict:
    """eval.json of the SAE in `sae_dir` on the held-out chunk (special-token rows out where the
    SAE left them out of training), run on `device`; CE splicing on the model with `adapter`."""
    sae, cfg = BatchTopKSAE.load(sae_dir, cfg_keys=("name", "hook_spec", "exclude_special_tokens"))
    sae = sae.to(device)
    excluded = special_row_offsets(holdout_path, tokens_path) if cfg["exclude_special_tokens"] else None
    metrics = reconstruction_metrics(sae, holdout_path, excluded)
    if is_causal_lm(model_path) and not replaceable(cfg["hook_spec"]):
        log.info("%s: no CE splicing at %s (defined for one module output or one hidden_states only)",
                 cfg["name"], cfg["hook_spec"])
    elif is_causal_lm(model_path):
        lm = load_model(model_path, device, adapter=adapter)
        metrics |= spliced_ce(sae, lm, cfg["hook_spec"], tokens_path, holdout, max_sequences=ce_sequences)
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
        for block in iter_kept_rows(chunk_path, excluded_rows, d_in=int(sae.W_enc.shape[0])):
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
    starts, lengths = sequence_bounds(rows["seq"])  # of all sequences: a kept one ends where the next starts
    return rows["token_id"].astype(np.int64), starts[:max_sequences], lengths[:max_sequences]


def _next_token_loss(logits, ids, mask) -> tuple[float, int]:
    """Summed next-token cross-entropy over the real (unpadded) positions, and their count."""
    keep = mask[:, 1:].bool()
    picked = logits[:, :-1][keep].float()  # only real positions are widened to float32
    loss = torch.nn.functional.cross_entropy(picked, ids[:, 1:][keep], reduction="sum")
    return float(loss), int(keep.sum())


def spliced_ce(sae, lm, hook_spec, tokens_path, chunk: Chunk, max_sequences: int = 64, batch_size: int = 16) -> dict:
    """CE loss of a causal LM on held-out sequences: clean, with the SAE's reconstruction in
    place of the hook's value, and with zeros there; and the fraction of CE recovered.

    Each batch is padded once and run three times (clean, spliced, zero), so the three losses
    cover exactly the same positions.
    """
    token_ids, starts, lengths = _sequences(tokens_path, chunk, max_sequences)
    sae_device = sae.W_enc.device
    device = next(lm.parameters()).device

    def reconstruct(value):
        flat = value.reshape(-1, value.shape[-1]).to(sae_device, torch.float32)
        return sae(flat).reshape(value.shape).to(value.device, value.dtype)

    totals = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    count = 0
    with torch.inference_mode():
        for batch in length_sorted_batches(lengths, batch_size):
            ids, mask = (t.to(device) for t in padded_batch(token_ids, starts, lengths, batch))
            passes = {"clean": contextlib.nullcontext(), "spliced": replaced(lm, hook_spec, reconstruct),
                      "zero": replaced(lm, hook_spec, torch.zeros_like)}
            for what, context in passes.items():
                with context:
                    loss, n = _next_token_loss(lm(input_ids=ids, attention_mask=mask).logits, ids, mask)
                totals[what] += loss
            count += n
    clean, spliced, zero = (totals[what] / count for what in ("clean", "spliced", "zero"))
    recovered = (zero - spliced) / (zero - clean) if zero != clean else None
    log.info("CE on %d held-out sequences at %s: clean %.4f, spliced %.4f, zero %.4f",
             len(starts), hook_spec, clean, spliced, zero)
    return {"ce_clean": clean, "ce_spliced": spliced, "ce_zero": zero, "ce_recovered": recovered}


def gather_metrics(names: list[str], eval_paths: list, cfg_paths: list, out_path, tsv_path=None) -> None:
    """results/saes/metrics.parquet: one row per SAE with its hook, size and every eval.json key;
    the same rows as tab-separated text at tsv_path (Snakemake's report shows it as a table)."""
    rows = []
    for name, eval_path, cfg_path in zip(names, eval_paths, cfg_paths):
        cfg = storage.read_json(cfg_path, keys=("hook", "d_sae", "k"))
        metrics = storage.read_json(eval_path, keys=("fvu", "l0"))
        rows.append({"name": name, "hook": cfg["hook"], "d_sae": cfg["d_sae"], "k": cfg["k"], **metrics})
    keys = list(dict.fromkeys(key for row in rows for key in row))
    table = pa.Table.from_pylist([{key: row.get(key) for key in keys} for row in rows])
    storage.write_table(out_path, table)
    if tsv_path is not None:
        with storage.atomic_path(tsv_path) as tmp:
            pa_csv.write_csv(table, tmp, pa_csv.WriteOptions(delimiter="\t"))
