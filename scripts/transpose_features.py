"""Feature-major (CSC) copy of an SAE's sparse feature store."""
from saeflow import feature_store, jobs, storage

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    n_features = storage.read_json(snakemake.input.cfg, keys=("d_sae",))["d_sae"]
    feature_store.transpose_store(list(snakemake.input.chunks), snakemake.output.by_feature, n_features,
                                  max_entries=snakemake.params.max_entries)


jobs.run_job(snakemake.log[0], main)
