"""Train one configured SAE on its hook's training chunks; write weights, cfg.json and the log."""
from pathlib import Path

import torch

from saeflow import jobs, model, train_job

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
out, p = snakemake.output, snakemake.params


def main():
    torch.set_num_threads(snakemake.threads)  # parallel sweep jobs share the cores Snakemake gave them
    settings = p.settings
    outputs = train_job.TrainOutputs(Path(out.weights).parent, Path(out.training_log), Path(p.checkpoint))
    # The device changes how fast, not what: it comes from config, not params.
    device = model.pick_device(snakemake.config["model"]["device"])
    steps = settings["train_tokens"] // settings["batch_size"]
    with jobs.progress(steps, snakemake.wildcards.sae, "step") as bar:
        train_job.train_sae_job(snakemake.wildcards.sae, settings, p.hook, p.hook_spec, list(snakemake.input.chunks),
                                snakemake.input.tokens, p.model_name, outputs, device=device,
                                progress=lambda step, total, row: bar.update(1))


jobs.run_job(snakemake.log[0], main, gpu=snakemake.resources.gpu)
