"""Per label the best SAE units and the best dense dimensions (analysis/concepts.parquet)."""

from saeflow import concepts, jobs, storage

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    table = concepts.concept_table(storage.read_parquet_table(snakemake.input.detection),
                                   storage.read_parquet_table(snakemake.input.dense_detection), snakemake.params.top_n)
    storage.write_table(snakemake.output.concepts, table)


jobs.run_job(snakemake.log[0], main)
