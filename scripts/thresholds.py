"""Percentile thresholds of the kept units (units/thresholds.parquet)."""
import pyarrow as pa

from saeflow import jobs, storage, units

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    percentiles = pa.concat_tables([storage.read_parquet_table(path) for path in snakemake.input.pieces])
    kept = units.read_kept_units(snakemake.input.unit_map)
    storage.write_table(snakemake.output.thresholds, units.thresholds_table(percentiles, kept))


jobs.run_job(snakemake.log[0], main)
