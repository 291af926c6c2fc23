"""Encode one activation chunk with a trained SAE into its sparse (CSR) feature chunk."""
from pathlib import Path

import torch

from saeflow import feature_store, jobs, model
from saeflow.sae import BatchTopKSAE

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    torch.set_num_threads(snakemake.threads)
    sae, _ = BatchTopKSAE.load(Path(snakemake.input.weights).parent)
    sae = sae.to(model.pick_device(snakemake.config["model"]["device"]))
    feature_store.encode_chunk(sae, snakemake.input.acts, snakemake.output.features, snakemake.params.dtype)


jobs.run_job(snakemake.log[0], main, gpu=snakemake.resources.gpu)
