"""autointerp_prompts.jsonl: the chat prompt an LLM labeller gets for each feature."""
from saeflow import autointerp, jobs

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
i = snakemake.input

jobs.run_job(snakemake.log[0], lambda: autointerp.write_prompts(
    i.top, i.quantile, i.tokens, i.documents, snakemake.output.prompts,
    examples=snakemake.params.examples, quantile_examples=snakemake.params.quantile_examples))
