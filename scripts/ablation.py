"""Ablation effects of an SAE's features on its top examples (loss per token, logits moved)."""
from pathlib import Path

import torch

from saeflow import ablation, jobs

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
i, p = snakemake.input, snakemake.params


def main():
    torch.set_num_threads(snakemake.threads)
    settings = {**p.settings, "batch_size": snakemake.config["ablation"]["batch_size"]}
    analysis = {"top_examples": i.top_examples, "feature_stats": i.feature_stats, "labels": i.labels}
    ablation.ablation_job(Path(i.cfg).parent, i.model, i.tokenizer, analysis, i.tokens, snakemake.output.effects,
                          snakemake.output.logits, settings, p.context, p.experiments,
                          device=snakemake.config["model"]["device"], dtype=p.model_dtype, adapter=p.adapter)


jobs.run_job(snakemake.log[0], main, gpu=snakemake.resources.gpu)
