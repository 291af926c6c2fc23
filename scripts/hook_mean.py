"""Mean activation vector of one hook point over all its chunks."""
from saeflow import activations, jobs

snakemake = snakemake  # noqa: F821  (injected by Snakemake)

jobs.run_job(snakemake.log[0], lambda: activations.hook_mean(list(snakemake.input.chunks), snakemake.output.mean))
