"""Concatenate the cosine and co-activation neighbour pieces into analysis/neighbours.parquet."""
from saeflow import jobs, storage

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
inp = snakemake.input


def main():
    storage.concat_parquet([*inp.neighbours_cosine, *inp.neighbours_coactivation], snakemake.output.neighbours,
                           sort_by=["feature", "kind", "rank"])


jobs.run_job(snakemake.log[0], main)
