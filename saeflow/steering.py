"""Steering experiments: greedy generation from prompts with an SAE feature (or a corpus label's
mean-difference vector) pushed into the hook's value, against the unsteered continuation.

Modes (per experiment):
- `add`: value + alpha * scale * direction at every position, scale = the feature's max
  activation (analysis/feature_stats.parquet) and direction its decoder row; for a label
  vector, scale 1 and direction the vector itself;
- `clamp`: the feature set to alpha * scale at every position, the SAE's error term kept, so
  alpha * scale equal to the feature's own activation changes nothing.
Fluency is the steered text's CE under the unsteered model; "did it take" is the feature's mean
activation on the generated tokens, also under the unsteered model (for a vector: the mean
projection on its unit direction). The alpha search keeps, per prompt and target, the strongest
alpha of the grid whose fluency stays within `ce_margin` of the unsteered text's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from saeflow import storage
from saeflow.errors import SaeflowError
from saeflow.generation import Scored, greedy_continuations, score_continuations
from saeflow.hooks import replaced
from saeflow.interventions import add_direction, by_rows, set_feature
from saeflow.label_vectors import read_label_vectors

log = logging.getLogger(__name__)

MODES = ("add", "clamp")
SCHEMA = pa.schema([
    ("experiment", pa.string()), ("mode", pa.string()), ("prompt_index", pa.int32()), ("prompt", pa.string()),
    ("feature", pa.int64()), ("vector", pa.string()), ("alpha", pa.float64()), ("scale", pa.float64()),
    ("baseline", pa.string()), ("steered", pa.string()), ("baseline_ce", pa.float64()),
    ("steered_ce", pa.float64()), ("baseline_activation", pa.float64()), ("steered_activation", pa.float64()),
    ("within_margin", pa.bool_()), ("best_alpha", pa.float64()),
])


@dataclass
class Target:
    """What one experiment steers with: a feature (its decoder row, scaled by its max) or a
    label vector (scale 1)."""

    feature: int | None
    vector: str | None
    direction: torch.Tensor  # [d]
    scale: float


def _key(experiment: dict, field: str) -> str:
    return f"steering.{experiment['name']}.{field}"


def feature_maxima(stats_path, features: list[int]) -> dict[int, float | None]:
    """Each feature's max activation (None for a feature that never fires)."""
    table = pq.read_table(stats_path, columns=["feature", "max"], filters=[("feature", "in", features)])
    return dict(zip(table["feature"].to_pylist(), table["max"].to_pylist()))


def experiment_features(experiment: dict, d_sae: int, stats_path, labels_path) -> list[int]:
    """The feature ids an experiment steers: `features` as given (checked against d_sae), or the
    `max_features` most active features whose analysis label contains `label`; [] for a vector."""
    if "features" in experiment:
        for feature in experiment["features"]:
            if not 0 <= feature < d_sae:
                raise SaeflowError(f"{_key(experiment, 'features')}: feature {feature} is past the SAE's "
                                   f"{d_sae} features (ids 0..{d_sae - 1}); pick an id of "
                                   f"results/saes/{experiment['sae']}/analysis/feature_stats.parquet")
        return list(experiment["features"])
    if "label" not in experiment:
        return []
    query = experiment["label"].lower()
    labels = pq.read_table(labels_path, columns=["feature", "label"])
    matches = [f for f, text in zip(labels["feature"].to_pylist(), labels["label"].to_pylist())
               if query in (text or "").lower()]
    if not matches:
        raise SaeflowError(f"{_key(experiment, 'label')}: no feature's label in {labels_path} contains "
                           f"{experiment['label']!r}; pick a word from that table, or give `features:` ids")
    stats = pq.read_table(stats_path, columns=["feature", "n_active"], filters=[("feature", "in", matches)])
    active = dict(zip(stats["feature"].to_pylist(), stats["n_active"].to_pylist()))
    ranked = sorted(matches, key=lambda f: (-active.get(f, 0), f))
    return ranked[: experiment["max_features"]]


def _label_vector(experiment: dict, vectors_path) -> torch.Tensor:
    """The label's row of the hook's label_vectors.safetensors."""
    if vectors_path is None:
        raise SaeflowError(f"{_key(experiment, 'vector')}: label vectors exist only for a corpus with labels "
                           "(corpus.labels_field); steer by `features:` or `label:` instead")
    vectors, labels = read_label_vectors(vectors_path)
    if experiment["vector"] not in labels:
        raise SaeflowError(f"{_key(experiment, 'vector')}: no label vector {experiment['vector']!r} in "
                           f"{vectors_path} (it has {', '.join(sorted(labels)[:20]) or 'none'}); set vector: to one "
                           "of the corpus's labels")
    return torch.from_numpy(vectors[labels.index(experiment["vector"])].copy())


def steering_targets(experiment: dict, sae, stats_path, labels_path, vectors_path=None) -> list[Target]:
    """The experiment's targets; `vectors_path`: the label_vectors.safetensors of the SAE's hook,
    where the corpus has labels."""
    if "vector" in experiment:
        if experiment["mode"] != "add":
            raise SaeflowError(f"{_key(experiment, 'mode')}: a label vector can only be added (mode: add); "
                               "clamp needs an SAE feature")
        return [Target(None, experiment["vector"], _label_vector(experiment, vectors_path), 1.0)]
    features = experiment_features(experiment, sae.d_sae, stats_path, labels_path)
    maxima = feature_maxima(stats_path, features)
    targets = []
    for feature in features:
        if maxima.get(feature) is None:
            raise SaeflowError(f"{_key(experiment, 'features')}: feature {feature} never fires in the corpus, "
                               "so it has no max activation to scale alpha by; pick a live feature")
        targets.append(Target(feature, None, sae.W_dec[feature].detach().clone(), float(maxima[feature])))
    return targets


def _edit(experiment: dict, sae, target: Target, alphas: list[float]):
    strengths = [alpha * target.scale for alpha in alphas]
    if experiment["mode"] == "add":
        return add_direction(target.direction, strengths)
    return set_feature(sae, [target.feature] * len(alphas), strengths)


def _took(sae, target: Target, scored: Scored) -> float | None:
    """The feature's mean activation on the continuation (a vector: mean projection on it)."""
    if scored.values.shape[0] == 0:
        return None
    values = scored.values.to(sae.W_enc.device, torch.float32)
    if target.feature is not None:
        with torch.inference_mode():
            return float(sae.encode(values)[:, target.feature].mean())
    unit = target.direction.to(values.device) / target.direction.norm()
    return float((values @ unit).mean())


def best_alpha(alphas: list[float], within: list[bool]) -> float | None:
    """The strongest alpha (largest magnitude; the positive one of a tie) within the margin."""
    kept = [alpha for alpha, ok in zip(alphas, within) if ok]
    return max(kept, key=lambda alpha: (abs(alpha), alpha)) if kept else None


def run_experiment(experiment: dict, sae, lm, tokenizer, hook_spec, prefix_ids: list[int], targets: list[Target],
                   progress=None) -> pa.Table:
    """The experiment's table (one row per prompt, target and alpha; see SCHEMA)."""
    if experiment["mode"] not in MODES:
        raise SaeflowError(f"{_key(experiment, 'mode')}: {experiment['mode']!r} is not one of {MODES}")
    torch.manual_seed(experiment["seed"])  # greedy needs no randomness; any sampling added later would be seeded
    alphas = [float(alpha) for alpha in experiment["alphas"]]
    stop_ids = {tokenizer.eos_token_id} - {None}
    new_tokens = experiment["max_new_tokens"]
    rows = []
    # One batch per prompt: row 0 unsteered, then each target's alphas. Each generation step
    # reads all the model's weights whatever the batch, so the rows come almost free.
    groups = [(slice(1 + i * len(alphas), 1 + (i + 1) * len(alphas)), _edit(experiment, sae, target, alphas))
              for i, target in enumerate(targets)]
    for index, prompt in enumerate(experiment["prompts"]):
        ids = prefix_ids + tokenizer(prompt, add_special_tokens=False)["input_ids"]
        with replaced(lm, hook_spec, by_rows(groups)):
            generated = greedy_continuations(lm, ids, 1 + len(groups) * len(alphas), new_tokens, stop_ids)
        baseline, *steered = score_continuations(lm, hook_spec, ids, generated)
        baseline_text = tokenizer.decode(generated[0], skip_special_tokens=True)
        for target, (group, _) in zip(targets, groups):
            runs = list(zip(alphas, generated[group], steered[group.start - 1 : group.stop - 1]))
            within = [s.ce is not None and baseline.ce is not None and s.ce <= baseline.ce + experiment["ce_margin"]
                      for _, _, s in runs]
            best = best_alpha(alphas, within)
            for (alpha, continuation, scored), ok in zip(runs, within):
                rows.append({
                    "experiment": experiment["name"], "mode": experiment["mode"], "prompt_index": index,
                    "prompt": prompt, "feature": target.feature, "vector": target.vector, "alpha": alpha,
                    "scale": target.scale, "baseline": baseline_text,
                    "steered": tokenizer.decode(continuation, skip_special_tokens=True),
                    "baseline_ce": baseline.ce, "steered_ce": scored.ce,
                    "baseline_activation": _took(sae, target, baseline),
                    "steered_activation": _took(sae, target, scored),
                    "within_margin": ok, "best_alpha": best,
                })
        if progress is not None:
            progress.update(1)
        log.info("%s: prompt %d of %d done", experiment["name"], index + 1, len(experiment["prompts"]))
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def steering_job(experiment: dict, sae_dir, model_path, tokenizer_path, stats_path, labels_path, out_path,
                 vectors_path=None, device: str = "cpu", dtype: str = "float32", adapter=None,
                 prepend_bos: bool = False) -> None:
    """results/saes/<sae>/steering/<experiment>.parquet: the experiment run on the saved SAE and
    the model (windows start as the corpus's do: the same special tokens before the prompt)."""
    from saeflow.jobs import progress
    from saeflow.model import load_model, load_tokenizer, special_token_wrapping
    from saeflow.sae import BatchTopKSAE

    sae, cfg = BatchTopKSAE.load(sae_dir)
    targets = steering_targets(experiment, sae, stats_path, labels_path, vectors_path)
    lm = load_model(model_path, device, dtype, adapter=adapter)
    sae = sae.to(next(lm.parameters()).device)
    tokenizer = load_tokenizer(tokenizer_path)
    prefix, _ = special_token_wrapping(tokenizer, prepend_bos)
    log.info("%s: %s %d target(s) x %d alpha(s) on %d prompt(s) at %s", experiment["name"], experiment["mode"],
             len(targets), len(experiment["alphas"]), len(experiment["prompts"]), cfg["hook_spec"])
    with progress(len(experiment["prompts"]), experiment["name"], "prompts") as bar:
        table = run_experiment(experiment, sae, lm, tokenizer, cfg["hook_spec"], prefix, targets, bar)
    storage.write_table(out_path, table)
