# Config validation, the path of every artifact (each pattern written once), and input functions.

import re
import sys

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
}


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
CORPUS_FILES = _checked(lambda: corpus.resolve_sources(config["corpus"]["source"]))
for _name, _sae in config["saes"].items():
    _checked(lambda: model.check_layer(_sae["layer"], MODEL_PATH, key=f"saes.{_name}.layer"))
    _checked(lambda: sae_width(_name, _sae, model.d_model(MODEL_PATH)))


def sae_layers():
    """Every layer some configured SAE reads, each once."""
    return sorted({sae["layer"] for sae in config["saes"].values()})


def chunk_ids(wildcards=None):
    """The chunk ids of the plan (known once the plan_chunks checkpoint has run)."""
    plan = checkpoints.plan_chunks.get().output.plan
    return [chunk.id for chunk in chunks.read_plan(plan)]


def layer_chunks(wildcards):
    return expand(PATHS["acts"], layer=wildcards.layer, chunk=chunk_ids())


def sae_layer_chunks(wildcards):
    """All activation chunks of the layer the SAE reads (the last one is its held-out chunk)."""
    return expand(PATHS["acts"], layer=config["saes"][wildcards.sae]["layer"], chunk=chunk_ids())


def sae_layer_chunk(wildcards):
    return PATHS["acts"].format(layer=config["saes"][wildcards.sae]["layer"], chunk=wildcards.chunk)


def sae_feature_chunks(wildcards):
    return expand(PATHS["features"], sae=wildcards.sae, chunk=chunk_ids())


def final_targets():
    """The default targets: every artifact the implemented stages make."""
    return [
        PATHS["tokens"],
        PATHS["documents"],
        PATHS["idf"],
        *expand(PATHS["mean"], layer=sae_layers()),
        PATHS["metrics"],
        *expand(PATHS["by_feature"], sae=list(config["saes"])),
    ]
