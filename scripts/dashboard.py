"""Build results/dashboard.html from the analysis artifacts of every SAE of the run."""
from pathlib import Path

from saeflow import jobs
from saeflow.dashboard import build_dashboard

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
i, p = snakemake.input, snakemake.params


def main():
    # input.<artifact> lists follow params.saes; an SAE's directory holds its cfg.json.
    saes = [{"name": name, "dir": str(Path(cfg).parent)} for name, cfg in zip(p.saes, i.sae_cfg)]
    run = {"model": p.model, "corpus_documents": i.documents, "corpus_tokens": i.tokens}
    build_dashboard(snakemake.output.html, run, saes)


jobs.run_job(snakemake.log[0], main)
