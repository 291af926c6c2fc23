"""Concatenate the shard pieces of every analysis table (shards are in feature order) and
record the settings used (params.json)."""
from saeflow import jobs, storage

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
inp, out = snakemake.input, snakemake.output
PARAMS_KEYS = ("top_k", "context", "bins", "histogram_scale", "percentiles", "detection_percentile", "influence_k",
               "neighbours", "quantile_bands", "per_band", "seed", "feature_shards")


def main():
    for table in snakemake.params.tables:
        storage.concat_parquet(list(inp[table]), out[table])
    storage.concat_parquet([*inp.neighbours_cosine, *inp.neighbours_coactivation], out.neighbours,
                           sort_by=["feature", "kind", "rank"])
    storage.write_json(out.params, {key: snakemake.params.analysis[key] for key in PARAMS_KEYS})


jobs.run_job(snakemake.log[0], main)
