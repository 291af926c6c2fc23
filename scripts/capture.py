"""Capture one layer's hidden states for one chunk of the plan."""
import torch

from saeflow import activations, chunks, jobs, model

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
p = snakemake.params


def main():
    model_path = model.resolve_model_path(p.model_path)
    layer = int(snakemake.wildcards.layer)
    model.check_layer(layer, model_path)
    chunk = chunks.find_chunk(snakemake.input.plan, snakemake.wildcards.chunk)
    # Device and batch size change how fast, not what, so they come from config, not params:
    # changing them must not make Snakemake rerun finished chunks.
    settings = snakemake.config["model"]
    torch.set_num_threads(snakemake.threads)
    net = model.load_model(model_path, settings["device"], p.model_dtype)
    with jobs.progress(chunk.n_tokens, chunk.id, "tok") as bar:
        activations.capture_chunk(
            net, model_path, snakemake.input.tokens, chunk, layer, snakemake.output.acts,
            batch_size=settings["batch_size"], dtype=p.dtype, progress=bar,
        )


jobs.run_job(snakemake.log[0], main)
