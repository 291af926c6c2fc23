"""Capture every hook point of the run for one chunk of the plan, one forward pass per batch."""
import torch

from saeflow import activations, chunks, jobs, model

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
i, p = snakemake.input, snakemake.params


def main():
    chunk = chunks.find_chunk(i.plan, snakemake.wildcards.chunk)
    # Device and batch size change how fast, not what, so they come from config, not params:
    # changing them must not make Snakemake rerun finished chunks.
    settings = snakemake.config["model"]
    torch.set_num_threads(snakemake.threads)
    net = model.load_model(i.model, settings["device"], p.model_dtype, adapter=p.adapter)
    # The rule's outputs are the hooks' Zarr directories, in the order of params.hooks.
    out_paths = dict(zip(p.hooks, snakemake.output, strict=True))
    with jobs.progress(chunk.n_tokens, chunk.id, "tok") as bar:
        activations.capture_chunk(net, p.model_name, i.tokens, chunk, dict(p.hooks), out_paths,
                                  batch_size=settings["batch_size"], dtype=p.dtype, progress=bar)


jobs.run_job(snakemake.log[0], main, gpu=snakemake.resources.gpu)
