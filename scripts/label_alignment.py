"""Cosine of every feature's decoder row with each label vector of its SAE's hook, ranked per label."""
from saeflow import jobs, label_vectors

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
i = snakemake.input

jobs.run_job(snakemake.log[0], lambda: label_vectors.label_alignment(
    i.weights, i.label_vectors, snakemake.output.alignment))
