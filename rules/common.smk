# Config validation, the path of every artifact (each pattern written once), and input functions.

import re
import sys

import pyarrow.parquet as pq

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate


min_version("8.0")

# The library lives beside this workflow. Snakemake hands its own sys.path to every script job,
# so this makes `saeflow` importable in all jobs, conda environments included.
sys.path.insert(0, workflow.basedir)

from saeflow import chunks, corpus, model  # noqa: E402
from saeflow.config import describe_config_error, sae_width  # noqa: E402
from saeflow.errors import SaeflowError  # noqa: E402

try:
    validate(config, "../config.schema.yaml")
except WorkflowError as err:
    raise WorkflowError(describe_config_error(err)) from None

PATHS = {
    "tokens": "results/corpus/tokens.parquet",
    "documents": "results/corpus/documents.parquet",
    "idf": "results/corpus/idf.parquet",
    "plan": "results/activations/chunks.json",
    "acts": "results/activations/layer-{layer}/{chunk}.zarr",
    "mean": "results/activations/layer-{layer}/mean.safetensors",
    "sae_weights": "results/saes/{sae}/sae_weights.safetensors",
    "sae_cfg": "results/saes/{sae}/cfg.json",
    "training_log": "results/saes/{sae}/training_log.parquet",
    "eval": "results/saes/{sae}/eval.json",
    "checkpoint": "results/saes/{sae}/checkpoint",
    "features": "results/saes/{sae}/features/{chunk}.zarr",
    "by_feature": "results/saes/{sae}/features/by_feature.zarr",
    "metrics": "results/saes/metrics.parquet",
    "unembedding": "results/model/unembedding.safetensors",
    "shard_piece": "results/saes/{sae}/analysis/shards/{table}/shard-{shard}.parquet",
    "analysis_table": "results/saes/{sae}/analysis/{table}.parquet",
    "analysis_params": "results/saes/{sae}/analysis/params.json",
    "neighbours": "results/saes/{sae}/analysis/neighbours.parquet",
    "detection": "results/saes/{sae}/analysis/detection.parquet",
    "unit_map": "results/saes/{sae}/units/unit_map.json",
    "filtered": "results/saes/{sae}/units/filtered/{chunk}.zarr",
    "thresholds": "results/saes/{sae}/units/thresholds.parquet",
    "autointerp_prompts": "results/saes/{sae}/analysis/autointerp_prompts.jsonl",
    "llm_labels": "results/saes/{sae}/analysis/llm_labels.parquet",
    "dashboard": "results/dashboard.html",
}

# Pieces each feature-shard job writes, and the tables gathered from them by concatenation.
ACTIVATION_PIECES = ["feature_stats", "histograms", "top_examples", "quantile_examples", "labels", "percentiles", "detection"]
DECODER_PIECES = ["influences", "neighbours_cosine", "neighbours_coactivation"]
GATHERED_TABLES = ["feature_stats", "histograms", "top_examples", "quantile_examples", "labels", "influences"]
GATHERED_PIECES = [*GATHERED_TABLES, "neighbours_cosine", "neighbours_coactivation"]


def log_path(stage, pattern=""):
    return f"results/logs/{stage}/{pattern}.log" if pattern else f"results/logs/{stage}.log"


def benchmark_path(stage, pattern=""):
    return f"results/benchmarks/{stage}/{pattern}.tsv" if pattern else f"results/benchmarks/{stage}.tsv"


def _checked(check):
    """Run a config check at planning time so bad input fails before any job starts."""
    try:
        return check()
    except SaeflowError as err:
        raise WorkflowError(str(err)) from None


MODEL_PATH = str(_checked(lambda: model.resolve_model_path(config["model"]["path"])))
MODEL_NAME = config["model"]["path"] or model.DEFAULT_MODEL_NAME  # as configured, for cfg.json
CORPUS_FILES = _checked(lambda: corpus.resolve_sources(config["corpus"]["source"]))
for _name, _sae in config["saes"].items():
    _checked(lambda: model.check_layer(_sae["layer"], MODEL_PATH, key=f"saes.{_name}.layer"))
    _checked(lambda: sae_width(_name, _sae, model.d_model(MODEL_PATH)))


D_MODEL = _checked(lambda: model.d_model(MODEL_PATH))


def n_shards(sae):
    """Feature shards of an SAE: analysis.feature_shards, but never more than it has features."""
    return min(config["analysis"]["feature_shards"], sae_width(sae, config["saes"][sae], D_MODEL))


def shard_ids(sae):
    return [f"{shard:03d}" for shard in range(n_shards(sae))]


def shard_pieces(table):
    """Input function: the pieces of `table` from every feature shard of the SAE."""
    return lambda wildcards: expand(PATHS["shard_piece"], sae=wildcards.sae, table=table, shard=shard_ids(wildcards.sae))


def corpus_has_labels():
    """Whether documents carry labels (known once the corpus is tokenised, before the chunk plan)."""
    checkpoints.plan_chunks.get()
    return "labels" in pq.read_schema(PATHS["documents"]).names


def sae_layers():
    """Every layer some configured SAE reads, each once."""
    return sorted({sae["layer"] for sae in config["saes"].values()})


def chunk_ids(wildcards=None):
    """The chunk ids of the plan (known once the plan_chunks checkpoint has run)."""
    plan = checkpoints.plan_chunks.get().output.plan
    return [chunk.id for chunk in chunks.read_plan(plan)]


def layer_chunks(wildcards):
    return expand(PATHS["acts"], layer=wildcards.layer, chunk=chunk_ids())


def sae_training_chunks(wildcards):
    """The activation chunks an SAE trains on: all of its layer's but the last."""
    return expand(PATHS["acts"], layer=config["saes"][wildcards.sae]["layer"], chunk=chunk_ids()[:-1])


def holdout_chunk_id():
    """The last chunk of the plan, held out of training for every SAE's eval."""
    return chunk_ids()[-1]


def sae_holdout_chunk(wildcards):
    return PATHS["acts"].format(layer=config["saes"][wildcards.sae]["layer"], chunk=holdout_chunk_id())


def sae_layer_chunk(wildcards):
    return PATHS["acts"].format(layer=config["saes"][wildcards.sae]["layer"], chunk=wildcards.chunk)


def sae_feature_chunks(wildcards):
    return expand(PATHS["features"], sae=wildcards.sae, chunk=chunk_ids())


def autointerp_targets():
    """Auto-interp outputs (patterns with {sae}): none unless enabled; labels only with an endpoint."""
    settings = config["autointerp"]
    if not settings["enabled"]:
        return []
    return [PATHS["autointerp_prompts"], *([PATHS["llm_labels"]] if settings["endpoint"] else [])]


def sae_targets(sae):
    """Every artifact under results/saes/<sae>/ that the workflow builds."""
    targets = [
        PATHS["by_feature"],
        *expand(PATHS["analysis_table"], table=GATHERED_TABLES, allow_missing=True),
        PATHS["neighbours"],
        PATHS["analysis_params"],
        PATHS["unit_map"],
        PATHS["thresholds"],
        *expand(PATHS["filtered"], chunk=chunk_ids(), allow_missing=True),
        *([PATHS["detection"]] if corpus_has_labels() else []),
        *autointerp_targets(),
    ]
    return expand(targets, sae=sae)


def run_artifacts(wildcards=None):
    """Every artifact of the run but the dashboard."""
    return [
        PATHS["tokens"],
        PATHS["documents"],
        PATHS["idf"],
        *expand(PATHS["mean"], layer=sae_layers()),
        PATHS["metrics"],
        *[target for sae in config["saes"] for target in sae_targets(sae)],
    ]


def final_targets(wildcards):
    """The default targets: the whole run, dashboard included."""
    return [*run_artifacts(), PATHS["dashboard"]]


def dashboard_inputs(wildcards):
    """Everything the dashboard reads: the corpus tables, and per artifact one list over the SAEs
    in config order (input.<key>[i] belongs to params.saes[i])."""
    per_sae = {
        "sae_cfg": PATHS["sae_cfg"],
        "eval": PATHS["eval"],
        "training_log": PATHS["training_log"],
        **{table: PATHS["analysis_table"].replace("{table}", table) for table in GATHERED_TABLES},
        "neighbours": PATHS["neighbours"],
        "analysis_params": PATHS["analysis_params"],
        "unit_map": PATHS["unit_map"],
        "thresholds": PATHS["thresholds"],
        **({"detection": PATHS["detection"]} if corpus_has_labels() else {}),
    }
    inputs = {"documents": PATHS["documents"], "tokens": PATHS["tokens"]}
    inputs.update({key: expand(pattern, sae=list(config["saes"])) for key, pattern in per_sae.items()})
    # Not read, but asked for: `snakemake results/dashboard.html` then leaves the whole run built
    # (layer means, filtered units, the sweep's metrics), the same set as `rule all`.
    inputs["rest_of_run"] = run_artifacts()
    return inputs
