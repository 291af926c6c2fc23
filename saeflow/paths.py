"""Every artifact's path and every table's name, written once.

The rules build their inputs and outputs from these patterns; scripts and the dashboard receive
the resulting paths through `snakemake.input` / `snakemake.output` and use the table names
below, so renaming an artifact is a change to this file only. Wildcards: `{hook}` a hook
point's name, `{chunk}` a chunk id, `{sae}` an SAE's name, `{shard}` a feature shard, `{table}`
an analysis table, `{experiment}` a steering experiment's name.
"""

PATHS = {
    "model": "results/model",
    "tokenizer": "results/tokenizer",
    "unembedding": "results/unembedding.safetensors",
    "tokens": "results/corpus/tokens.parquet",
    "unsplit_documents": "results/corpus/documents.unsplit.parquet",
    "documents": "results/corpus/documents.parquet",
    "idf": "results/corpus/idf.parquet",
    "plan": "results/activations/chunks.json",
    "acts": "results/activations/{hook}/{chunk}.zarr",
    "mean": "results/activations/{hook}/mean.safetensors",
    "doc_vectors": "results/activations/{hook}/doc_vectors.zarr",
    "doc_mean": "results/activations/{hook}/doc_mean.safetensors",
    "doc_vector_table": "results/activations/{hook}/doc_vectors.parquet",
    "label_vectors": "results/activations/{hook}/label_vectors.safetensors",
    "label_vector_table": "results/activations/{hook}/label_vectors.parquet",
    "dense_detection": "results/activations/{hook}/dense_detection.parquet",
    "sae_weights": "results/saes/{sae}/sae_weights.safetensors",
    "sae_cfg": "results/saes/{sae}/cfg.json",
    "training_log": "results/saes/{sae}/training_log.parquet",
    "training_curves": "results/saes/{sae}/training_curves.svg",
    "eval": "results/saes/{sae}/eval.json",
    "checkpoint": "results/saes/{sae}/checkpoint",
    "features": "results/saes/{sae}/features/{chunk}.zarr",
    "by_feature": "results/saes/{sae}/features/by_feature.zarr",
    "metrics": "results/saes/metrics.parquet",
    "metrics_table": "results/saes/metrics.tsv",
    "shard_piece": "results/saes/{sae}/analysis/shards/{table}/shard-{shard}.parquet",
    "analysis_table": "results/saes/{sae}/analysis/{table}.parquet",
    "analysis_params": "results/saes/{sae}/analysis/params.json",
    "neighbours": "results/saes/{sae}/analysis/neighbours.parquet",
    "detection": "results/saes/{sae}/analysis/detection.parquet",
    "concepts": "results/saes/{sae}/analysis/concepts.parquet",
    "unit_map": "results/saes/{sae}/units/unit_map.json",
    "filtered": "results/saes/{sae}/units/filtered/{chunk}.zarr",
    "thresholds": "results/saes/{sae}/units/thresholds.parquet",
    "autointerp_prompts": "results/saes/{sae}/analysis/autointerp_prompts.jsonl",
    "llm_labels": "results/saes/{sae}/analysis/llm_labels.parquet",
    "label_alignment": "results/saes/{sae}/analysis/label_alignment.parquet",
    "ablation": "results/saes/{sae}/analysis/ablation.parquet",
    "ablation_logits": "results/saes/{sae}/analysis/ablation_logits.parquet",
    "steering": "results/saes/{sae}/steering/{experiment}.parquet",
    "dashboard": "results/dashboard.html",
}

# Pieces each activation feature-shard job writes (one per table it contributes to).
ACTIVATION_PIECES = ["feature_stats", "calibration_stats", "histograms", "top_examples", "quantile_examples", "labels",
                     "percentiles", "detection"]
# Pieces of the decoder-only shard jobs: influences (hidden_states hooks only) and neighbours.
INFLUENCE_PIECE = "influences"
NEIGHBOUR_PIECES = ["neighbours_cosine", "neighbours_coactivation"]
# Tables gathered from activation pieces by concatenation, each analysis/<table>.parquet.
ACTIVATION_TABLES = ["feature_stats", "calibration_stats", "histograms", "top_examples", "quantile_examples", "labels"]


def path(key: str, **wildcards) -> str:
    """One artifact's path with the given wildcards filled in (the rest left as patterns)."""
    pattern = PATHS[key]
    for name, value in wildcards.items():
        pattern = pattern.replace("{" + name + "}", str(value))
    return pattern
