"""Decoder-cosine and co-activation neighbours of one feature shard."""
import numpy as np

from saeflow import decoder_tables, feature_shard, jobs, storage

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
p, out = snakemake.params, snakemake.output


def main():
    W_dec = storage.read_safetensors(snakemake.input.weights, {"W_dec": (None, None)})["W_dec"]
    n_features = len(W_dec)
    features = feature_shard.shard_range(n_features, p.n_shards, int(snakemake.wildcards.shard))
    indptr = feature_shard.read_feature_indptr(snakemake.input.by_feature)
    # Both tables first, so that a damaged input leaves neither output behind.
    cosine = decoder_tables.cosine_table(W_dec, features, p.neighbours)
    coactivation = decoder_tables.coactivation_table(list(p.chunks), features, n_features, np.diff(indptr),
                                                     p.neighbours)
    storage.write_table(out.neighbours_cosine, cosine)
    storage.write_table(out.neighbours_coactivation, coactivation)


jobs.run_job(snakemake.log[0], main)
