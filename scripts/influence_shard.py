"""Influences (the largest and smallest entries of W_dec @ W_U) of one feature shard."""
import numpy as np

from saeflow import decoder_tables, feature_shard, jobs, model, sequences, storage

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
p = snakemake.params


def main():
    W_dec = storage.read_safetensors(snakemake.input.weights, {"W_dec": (None, None)})["W_dec"]
    W_U = storage.read_safetensors(snakemake.input.W_U, {"W_U": (W_dec.shape[1], None)})["W_U"]
    features = feature_shard.shard_range(len(W_dec), p.n_shards, int(snakemake.wildcards.shard))
    decode = sequences.TokenDecoder(model.load_tokenizer(snakemake.input.tokenizer))
    storage.write_table(snakemake.output.influences, decoder_tables.influence_table(
        W_dec, W_U, features, p.influence_k, lambda ids: decode(np.asarray(ids))))


jobs.run_job(snakemake.log[0], main)
