"""neighbours.parquet: both kinds of neighbours of every feature."""
from saeflow import jobs, storage

snakemake = snakemake  # noqa: F821  (injected by Snakemake)

jobs.run_job(snakemake.log[0], lambda: storage.concat_parquet(
    [*snakemake.input.cosine, *snakemake.input.coactivation], snakemake.output.table, sort_by=["feature", "kind", "rank"]))
