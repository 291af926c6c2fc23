"""W_U [d_model, vocab] of the model, for the influence analysis."""
from saeflow import jobs, model, storage

snakemake = snakemake  # noqa: F821  (injected by Snakemake)

jobs.run_job(snakemake.log[0], lambda: storage.write_safetensors(
    snakemake.output.W_U, {"W_U": model.unembedding(snakemake.input.model)}, {}))
