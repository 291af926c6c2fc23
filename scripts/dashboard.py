"""Build results/dashboard.html from the corpus tables and the artifacts of every SAE of the run."""
from saeflow import jobs
from saeflow.dashboard import build_dashboard
from saeflow.dashboard.artifacts import from_inputs

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    # Per-SAE inputs are lists that follow params.saes, but those of params.owners ({key: the SAE
    # of each path}): influences, steering (one path per experiment), ablation, LLM labels, ...
    p = snakemake.params
    run, saes = from_inputs(dict(snakemake.input.items()), p.model, p.saes, p.owners)
    build_dashboard(snakemake.output.html, run, saes)


jobs.run_job(snakemake.log[0], main)
