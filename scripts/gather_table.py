"""Concatenate one analysis table's shard pieces (shards are in feature order)."""
from saeflow import jobs, storage

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    storage.concat_parquet(list(snakemake.input.pieces), snakemake.output.table)


jobs.run_job(snakemake.log[0], main)
