# Config validation, the whole plan fixed at parse time (model, hooks, chunks, shards), and input
# functions. Paths come from saeflow/paths.py, the one registry of artifact names.

import re
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate


min_version("8.0")

# The library lives beside this workflow. Snakemake hands its own sys.path to every script job,
# so this makes `saeflow` importable in all jobs, conda environments included.
sys.path.insert(0, workflow.basedir)

from saeflow import adapter, chunk_count, corpus, corpus_plan, hook_plan, model_source  # noqa: E402
from saeflow.config import (  # noqa: E402
    describe_config_error,
    hook_config_keys,
    hook_specs,
    sae_hook,
    sae_width,
    steering_experiments,
)
from saeflow.hooks import replaceable  # noqa: E402
from saeflow.errors import SaeflowError  # noqa: E402
from saeflow.paths import (  # noqa: E402
    ACTIVATION_PIECES,
    ACTIVATION_TABLES,
    INFLUENCE_PIECE,
    NEIGHBOUR_PIECES,
    PATHS,
    path,
)

try:
    validate(config, "../config.schema.yaml")
except WorkflowError as err:
    raise WorkflowError(describe_config_error(err)) from None


def names_pattern(names):
    """A wildcard constraint matching exactly these names (none: nothing)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


def per_attempt(base):
    """A rule's mem_mb or runtime: its value, times the attempt, so that a retried job (the SLURM
    profile's `retries`) asks for twice, then three times, what it had."""
    return lambda wildcards, attempt: base * attempt


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


# The model: a GGUF file is converted once into results/model/; a Hugging Face directory is read
# in place. Its shape comes from config.json or the GGUF header, without loading it.
MODEL = _checked(lambda: model_source.resolve_model_source(config["model"]["path"]))
MODEL_DIR = PATHS["model"] if MODEL.is_gguf else str(MODEL.path)
TOKENIZER_DIR = PATHS["tokenizer"] if MODEL.is_gguf else str(MODEL.path)
MODEL_NAME = MODEL.name  # as configured, for cfg.json and the dashboard
ADAPTER = config["model"]["adapter"]
# Weights must be safetensors: saeflow never opens a pickle checkpoint, since loading one can run code.
if not MODEL.is_gguf:
    _checked(lambda: model_source.check_safetensors_weights(MODEL.path))
if ADAPTER:
    _checked(lambda: adapter.check_adapter_folder(ADAPTER))
CAUSAL_LM = _checked(lambda: model_source.source_shape(MODEL).causal_lm)
# Every model job reads the model directory (and the adapter), so a new one reruns them.
MODEL_INPUTS = {"model": MODEL_DIR, **({"adapter": ADAPTER} if ADAPTER else {})}

# Hook points (name -> spec) and their widths; module paths are checked against the model here.
HOOKS = _checked(lambda: hook_specs(config))
HOOK_WIDTHS = _checked(
    lambda: hook_plan.hook_widths(MODEL, ADAPTER, HOOKS, ".snakemake/saeflow", hook_config_keys(config))
)
SAE_HOOK = {name: sae_hook(name, settings, HOOKS) for name, settings in config["saes"].items()}
# SAEs imported from a SAELens folder instead of trained: name -> folder.
PRETRAINED = {name: settings["pretrained"] for name, settings in config["saes"].items() if settings.get("pretrained")}
SAE_WIDTH = {
    name: _checked(lambda: sae_width(name, settings, HOOK_WIDTHS[SAE_HOOK[name]]))
    for name, settings in config["saes"].items()
}

# Chunks: how many is fixed here from the corpus's size in bytes (the plan job then balances
# the real tokens over them), so a dry run shows every per-chunk job.
CORPUS_FILES = _checked(lambda: corpus.resolve_sources(config["corpus"]["source"]))
CORPUS_HAS_LABELS = _checked(
    lambda: corpus_plan.has_field(CORPUS_FILES, config["corpus"]["format"], config["corpus"]["labels_field"])
)
CORPUS_HAS_SPANS = _checked(
    lambda: corpus_plan.has_field(CORPUS_FILES, config["corpus"]["format"], config["corpus"]["spans_field"])
)
# Concept detection (and the dense baseline) needs document labels or labelled spans.
CONCEPT_DETECTION = CORPUS_HAS_LABELS or CORPUS_HAS_SPANS
N_CHUNKS = _checked(
    lambda: chunk_count.planned_chunk_count(
        corpus_plan.estimated_bytes(CORPUS_FILES, config["corpus"]["format"], config["corpus"]["max_documents"]),
        config["activations"]["tokens_per_chunk"],
        config["corpus"]["max_tokens"],
    )
)
CHUNK_IDS = [chunk_count.chunk_id(index) for index in range(N_CHUNKS)]
TRAINING_CHUNK_IDS, HOLDOUT_CHUNK_ID = CHUNK_IDS[:-1], CHUNK_IDS[-1]  # the last chunk is every SAE's eval

# Steering experiments by name, checked against the SAEs and the model before any job runs.
STEERING = _checked(
    lambda: steering_experiments(config, HOOKS, SAE_HOOK, SAE_WIDTH, CAUSAL_LM, CORPUS_HAS_LABELS)
)


# The analysis settings each kind of job reads, and those params.json records.
ACTIVATION_SETTINGS = ["top_k", "context", "bins", "histogram_scale", "percentiles", "detection_percentile",
                       "quantile_bands", "per_band", "seed"]
RECORDED_SETTINGS = [*ACTIVATION_SETTINGS, "influence_k", "neighbours", "feature_shards"]


def n_shards(sae):
    """Feature shards of an SAE: analysis.feature_shards, but never more than it has features."""
    return min(config["analysis"]["feature_shards"], SAE_WIDTH[sae])


def shard_ids(sae):
    return [f"{shard:03d}" for shard in range(n_shards(sae))]


def has_influences(sae):
    """Influences (W_dec @ W_U) are defined only for an SAE on one hidden_states hook."""
    spec = HOOKS[SAE_HOOK[sae]]
    return isinstance(spec, str) and spec.startswith("hidden_states.")


def steering_of(sae):
    """The steering experiments of one SAE, in config order."""
    return [experiment for experiment in STEERING.values() if experiment["sae"] == sae]


def has_ablation(sae):
    """Ablation effects need a causal LM and a hook the forward pass can be edited at."""
    wanted = config["ablation"]["max_features"] > 0 or steering_of(sae)
    return bool(wanted) and CAUSAL_LM and replaceable(HOOKS[SAE_HOOK[sae]])


def steering_inputs(wildcards):
    """A steering job's inputs: the SAE, its feature stats and labels (for `label:` queries), the
    model and tokenizer, and the label vectors of its hook for a `vector:` experiment."""
    experiment = STEERING[wildcards.experiment]
    if experiment["sae"] != wildcards.sae:
        raise WorkflowError(f"steering experiment {wildcards.experiment} belongs to SAE {experiment['sae']}, "
                            f"not {wildcards.sae}: ask for {path('steering', sae=experiment['sae'], experiment=wildcards.experiment)}")
    inputs = {
        "weights": path("sae_weights", sae=wildcards.sae),
        "cfg": path("sae_cfg", sae=wildcards.sae),
        "feature_stats": path("analysis_table", sae=wildcards.sae, table="feature_stats"),
        "labels": path("analysis_table", sae=wildcards.sae, table="labels"),
        "tokenizer": TOKENIZER_DIR,
        **MODEL_INPUTS,
    }
    if "vector" in experiment:
        inputs["vectors"] = path("label_vectors", hook=SAE_HOOK[wildcards.sae])
    return inputs


def shard_pieces(table):
    """Input function: the pieces of `table` from every feature shard of the SAE."""
    return lambda wildcards: expand(PATHS["shard_piece"], sae=wildcards.sae, table=table, shard=shard_ids(wildcards.sae))


def hook_chunks(hook, chunk_ids=CHUNK_IDS):
    return [path("acts", hook=hook, chunk=chunk) for chunk in chunk_ids]


def sae_training_chunks(wildcards):
    return hook_chunks(SAE_HOOK[wildcards.sae], TRAINING_CHUNK_IDS)


def sae_holdout_chunk(wildcards):
    return path("acts", hook=SAE_HOOK[wildcards.sae], chunk=HOLDOUT_CHUNK_ID)


def sae_hook_chunk(wildcards):
    return path("acts", hook=SAE_HOOK[wildcards.sae], chunk=wildcards.chunk)


def sae_feature_chunks(wildcards):
    return expand(PATHS["features"], sae=wildcards.sae, chunk=CHUNK_IDS)


def autointerp_targets():
    """Auto-interp outputs (patterns with {sae}): none unless enabled; labels only with an endpoint."""
    settings = config["autointerp"]
    if not settings["enabled"]:
        return []
    return [PATHS["autointerp_prompts"], *([PATHS["llm_labels"]] if settings["endpoint"] else [])]


def analysis_tables(sae):
    """The gathered analysis tables of an SAE (influences only where defined)."""
    return [*ACTIVATION_TABLES, *([INFLUENCE_PIECE] if has_influences(sae) else [])]


def sae_targets(sae):
    """Every artifact under results/saes/<sae>/ that the workflow builds."""
    targets = [
        PATHS["by_feature"],
        *[path("analysis_table", table=table) for table in analysis_tables(sae)],
        PATHS["neighbours"],
        PATHS["analysis_params"],
        PATHS["training_curves"],
        PATHS["unit_map"],
        PATHS["thresholds"],
        *expand(PATHS["filtered"], chunk=CHUNK_IDS, allow_missing=True),
        *([PATHS["detection"], PATHS["concepts"]] if CONCEPT_DETECTION else []),
        *([PATHS["label_alignment"]] if CORPUS_HAS_LABELS else []),
        *([PATHS["ablation"], PATHS["ablation_logits"]] if has_ablation(sae) else []),
        *expand(PATHS["steering"], experiment=[e["name"] for e in steering_of(sae)], allow_missing=True),
        *autointerp_targets(),
    ]
    return expand(targets, sae=sae)


def hook_targets(hook):
    """Every artifact under results/activations/<hook>/ beyond the chunks."""
    targets = [PATHS["mean"], PATHS["doc_vectors"], PATHS["doc_mean"], PATHS["doc_vector_table"]]
    if CORPUS_HAS_LABELS:
        targets += [PATHS["label_vectors"], PATHS["label_vector_table"]]
    return expand(targets, hook=hook)


def run_artifacts(wildcards=None):
    """Every artifact of the run but the dashboard."""
    return [
        PATHS["tokens"],
        PATHS["documents"],
        PATHS["idf"],
        *[target for hook in HOOKS for target in hook_targets(hook)],
        PATHS["metrics"],
        PATHS["metrics_table"],
        *[target for sae in config["saes"] for target in sae_targets(sae)],
    ]


def final_targets(wildcards):
    """The default targets: the whole run, dashboard included."""
    return [*run_artifacts(), PATHS["dashboard"]]


def dashboard_owners():
    """Dashboard inputs whose lists do not follow config's SAEs: input key -> the SAE of each path."""
    saes = list(config["saes"])
    owners = {
        "influences": [sae for sae in saes if has_influences(sae)],
        "steering": [experiment["sae"] for experiment in STEERING.values()],
        "ablation": [sae for sae in saes if has_ablation(sae)],
    }
    owners["ablation_logits"] = owners["ablation"]
    if config["autointerp"]["enabled"] and config["autointerp"]["endpoint"]:
        owners["llm_labels"] = saes
    if CORPUS_HAS_LABELS:
        owners["label_alignment"] = saes
    return owners


def dashboard_inputs(wildcards):
    """Everything the dashboard reads: the corpus tables, and per artifact one list over the SAEs
    in config order (input.<key>[i] belongs to params.saes[i]), but for the keys of
    dashboard_owners(), whose lists follow it (influences, steering experiments, ablation, ...)."""
    saes = list(config["saes"])
    per_sae = {
        "sae_cfg": PATHS["sae_cfg"],
        "eval": PATHS["eval"],
        "training_log": PATHS["training_log"],
        # calibration_stats feeds the pruning only: the page shows the stats over all tokens.
        **{table: path("analysis_table", table=table) for table in ACTIVATION_TABLES if table != "calibration_stats"},
        "neighbours": PATHS["neighbours"],
        "analysis_params": PATHS["analysis_params"],
        "unit_map": PATHS["unit_map"],
        "thresholds": PATHS["thresholds"],
        **({"detection": PATHS["detection"], "concepts": PATHS["concepts"]} if CONCEPT_DETECTION else {}),
    }
    inputs = {"documents": PATHS["documents"], "tokens": PATHS["tokens"]}
    inputs.update({key: expand(pattern, sae=saes) for key, pattern in per_sae.items()})
    owners = dashboard_owners()
    inputs["influences"] = [path("analysis_table", sae=sae, table=INFLUENCE_PIECE) for sae in owners["influences"]]
    inputs["steering"] = [path("steering", sae=e["sae"], experiment=e["name"]) for e in STEERING.values()]
    for key in ("ablation", "ablation_logits", "llm_labels", "label_alignment"):
        if key in owners:
            inputs[key] = [path(key, sae=sae) for sae in owners[key]]
    # Not read, but asked for: `snakemake results/dashboard.html` then leaves the whole run built
    # (hook means, filtered units, the sweep's metrics), the same set as `rule all`.
    inputs["rest_of_run"] = run_artifacts()
    return inputs
