"""Feature-major (CSC) copy of an SAE's sparse feature store."""
from saeflow import features, jobs, storage

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    n_features = storage.read_json(snakemake.input.cfg)["d_sae"]
    features.transpose_store(list(snakemake.input.chunks), snakemake.output.by_feature, n_features,
                             max_entries=snakemake.params.max_entries)


jobs.run_job(snakemake.log[0], main)
