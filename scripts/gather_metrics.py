"""One row of held-out metrics per SAE of the run (results/saes/metrics.parquet)."""
from saeflow import evaluate, jobs

snakemake = snakemake  # noqa: F821  (injected by Snakemake)

jobs.run_job(snakemake.log[0], lambda: evaluate.gather_metrics(
    snakemake.params.names, list(snakemake.input.evals), list(snakemake.input.cfgs), snakemake.output.metrics,
    snakemake.output.table))
