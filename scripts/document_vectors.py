"""Each document's pooled vector of one hook, their mean, and each document's cosine to it."""
from saeflow import doc_vectors, jobs

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
i, o = snakemake.input, snakemake.output

jobs.run_job(snakemake.log[0], lambda: doc_vectors.document_vectors(
    list(i.chunks), i.tokens, i.documents, snakemake.params.pool, o.vectors, o.mean, o.table))
