"""params.json: the settings the analyses of this SAE used."""
from saeflow import jobs, storage

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
KEYS = ("top_k", "context", "bins", "histogram_scale", "percentiles", "detection_percentile", "influence_k",
        "neighbours", "quantile_bands", "per_band", "seed", "feature_shards")

jobs.run_job(snakemake.log[0], lambda: storage.write_json(
    snakemake.output.params, {key: snakemake.params.analysis[key] for key in KEYS}))
