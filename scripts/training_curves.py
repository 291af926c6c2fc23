"""An SAE's training curves as an SVG for Snakemake's report (training_curves.svg)."""
from saeflow import jobs, training_curves

snakemake = snakemake  # noqa: F821  (injected by Snakemake)

jobs.run_job(snakemake.log[0], lambda: training_curves.training_curves_job(
    snakemake.input.log, snakemake.output.svg, f"SAE {snakemake.wildcards.sae}: training (batch top-k)"))
