"""Every activation analysis of one feature shard: one Parquet piece per table."""
from saeflow import feature_shard, jobs, storage

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
analysis = snakemake.params.analysis


def main():
    params = feature_shard.AnalysisParams(
        top_k=analysis["top_k"], context=analysis["context"], bins=analysis["bins"],
        histogram_scale=analysis["histogram_scale"], percentiles=tuple(analysis["percentiles"]),
        detection_percentile=analysis["detection_percentile"], quantile_bands=analysis["quantile_bands"],
        per_band=analysis["per_band"], seed=analysis["seed"],
    )
    n_features = feature_shard.open_by_feature(snakemake.input.by_feature).attrs["n_features"]
    features = feature_shard.shard_range(n_features, snakemake.params.n_shards, int(snakemake.wildcards.shard))
    corpus = feature_shard.load_corpus_index(snakemake.input.tokens, snakemake.input.idf, snakemake.input.documents)
    for name, table in feature_shard.analyse_shard(snakemake.input.by_feature, features, corpus, params).items():
        storage.write_table(snakemake.output[name], table)


jobs.run_job(snakemake.log[0], main)
