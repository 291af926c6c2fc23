"""Per corpus label, the mean-difference vector of one hook (documents with the label minus without)."""
from saeflow import jobs, label_vectors

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
i, o = snakemake.input, snakemake.output

jobs.run_job(snakemake.log[0], lambda: label_vectors.label_vectors(i.vectors, i.documents, o.vectors, o.table))
