"""Cut the token index range into chunks of whole sequences (results/activations/chunks.json)."""
from saeflow import chunks, jobs

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    tokens_per_chunk = snakemake.params.tokens_per_chunk
    plan = chunks.plan_chunks(chunks.sequence_lengths(snakemake.input.tokens), tokens_per_chunk)
    chunks.write_plan(snakemake.output.plan, plan, tokens_per_chunk)


jobs.run_job(snakemake.log[0], main)
