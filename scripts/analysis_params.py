"""Record the settings the analyses used (analysis/params.json)."""
from saeflow import jobs, storage

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    storage.write_json(snakemake.output.params, dict(snakemake.params.analysis))


jobs.run_job(snakemake.log[0], main)
