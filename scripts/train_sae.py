"""Train one configured SAE on its layer's activation chunks; write weights, cfg, log and eval."""
from pathlib import Path

import torch

from saeflow import chunks, fit, jobs, model

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
out, p = snakemake.output, snakemake.params


def main():
    torch.set_num_threads(snakemake.threads)  # parallel sweep jobs share the cores Snakemake gave them
    settings = p.settings
    holdout = chunks.read_plan(snakemake.input.plan)[-1]
    outputs = fit.SaeOutputs(Path(out.weights).parent, Path(out.training_log), Path(out.eval), Path(p.checkpoint))
    device = model.pick_device(snakemake.config["model"]["device"])
    steps = settings["train_tokens"] // settings["batch_size"]
    with jobs.progress(steps, snakemake.wildcards.sae, "step") as bar:
        fit.fit_sae(snakemake.wildcards.sae, settings, list(snakemake.input.chunks), holdout,
                    snakemake.input.tokens, p.model_path, outputs, device=device,
                    progress=lambda step, total, row: bar.update(1))


jobs.run_job(snakemake.log[0], main)
