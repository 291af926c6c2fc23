"""Cut the token index range into the planned number of chunks of whole sequences
(results/activations/chunks.json)."""
from saeflow import chunks, jobs

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    plan = chunks.plan_chunks(chunks.sequence_lengths(snakemake.input.tokens), snakemake.params.n_chunks)
    chunks.write_plan(snakemake.output.plan, plan)


jobs.run_job(snakemake.log[0], main)
