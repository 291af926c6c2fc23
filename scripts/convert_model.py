"""Dequantise the configured GGUF model into a float32 Hugging Face directory (results/model/)."""
from saeflow import jobs, model_source

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    model_source.convert_gguf(snakemake.input.gguf, snakemake.output.model)


jobs.run_job(snakemake.log[0], main)
