"""One steering experiment: greedy continuations of its prompts, unsteered and steered per alpha."""
from pathlib import Path

import torch

from saeflow import jobs, steering

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
i, p = snakemake.input, snakemake.params


def main():
    torch.set_num_threads(snakemake.threads)
    steering.steering_job(p.experiment, Path(i.cfg).parent, i.model, i.tokenizer, i.feature_stats, i.labels,
                          snakemake.output.table, vectors_path=i.get("vectors"),
                          device=snakemake.config["model"]["device"], dtype=p.model_dtype, adapter=p.adapter,
                          prepend_bos=p.prepend_bos)


jobs.run_job(snakemake.log[0], main, gpu=snakemake.resources.gpu)
