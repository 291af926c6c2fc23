"""Decoder-cosine and co-activation neighbours of one feature shard."""
import numpy as np

from saeflow import decoder_tables, feature_shard, jobs, storage

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
p, out = snakemake.params, snakemake.output


def main():
    W_dec = storage.read_safetensors(snakemake.input.weights)["W_dec"]
    n_features = len(W_dec)
    features = feature_shard.shard_range(n_features, p.n_shards, int(snakemake.wildcards.shard))
    storage.write_table(out.neighbours_cosine, decoder_tables.cosine_table(W_dec, features, p.neighbours))
    indptr = storage.read_zarr_array(storage.open_zarr_group(snakemake.input.by_feature), "indptr")
    storage.write_table(out.neighbours_coactivation, decoder_tables.coactivation_table(
        list(p.chunks), features, n_features, np.diff(indptr), p.neighbours))


jobs.run_job(snakemake.log[0], main)
