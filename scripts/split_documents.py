"""Each document's split, calibration or test (corpus/documents.parquet)."""
import logging

from saeflow import jobs, splits

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    counts = splits.split_documents(snakemake.input.documents, snakemake.output.documents,
                                    snakemake.params.calibration_fraction, snakemake.params.seed)
    logging.getLogger(__name__).info("documents per split: %s", counts)


jobs.run_job(snakemake.log[0], main)
