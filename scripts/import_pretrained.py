"""A pretrained SAELens-format SAE rewritten as this run's SAE folder (it is not trained here)."""
from pathlib import Path

from saeflow import jobs, pretrained

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
i, p = snakemake.input, snakemake.params


def main():
    pretrained.import_pretrained_job(i.folder, snakemake.wildcards.sae, p.hook, p.hook_spec, p.model_name,
                                     Path(snakemake.output.cfg).parent, snakemake.output.training_log, p.hook_width)


jobs.run_job(snakemake.log[0], main)
