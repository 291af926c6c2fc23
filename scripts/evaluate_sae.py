"""Held-out eval.json of one saved SAE (reconstruction, and CE splicing for causal LMs)."""
from pathlib import Path

import torch

from saeflow import chunks, evaluate, jobs, model

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
i, p = snakemake.input, snakemake.params


def main():
    torch.set_num_threads(snakemake.threads)
    holdout = chunks.find_chunk(i.plan, p.holdout_chunk)
    device = model.pick_device(snakemake.config["model"]["device"])
    evaluate.evaluate_sae_job(Path(i.weights).parent, i.holdout, holdout, i.tokens, i.model,
                              snakemake.output.eval, device=device, adapter=p.adapter,
                              ce_sequences=p.ce_sequences)


jobs.run_job(snakemake.log[0], main, gpu=snakemake.resources.gpu)
