"""Concept detection of the hook's raw dimensions, both signs (the dense baseline)."""
from saeflow import dense_baseline, jobs

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    dense_baseline.dense_detection_job(
        list(snakemake.input.chunks), snakemake.input.tokens, snakemake.input.documents,
        snakemake.output.detection, snakemake.params.detection_percentile, snakemake.params.memory_mb)


jobs.run_job(snakemake.log[0], main)
