"""Steering experiments on a tiny Llama, against a cache-free greedy loop that edits the input
embeddings (the hook hidden_states.0) by hand, and numpy CE and encodings."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from saeflow.config import steering_experiments
from saeflow.errors import SaeflowError
from saeflow.model import load_model, load_tokenizer
from saeflow.sae import BatchTopKSAE
from saeflow.steering import best_alpha, experiment_features, steering_job
from saeflow.storage import write_safetensors
from test_interventions import numpy_encoding
from tiny_models import build_tiny_llama

D_SAE, DEAD = 16, 5
MAXIMA = [1.0 + 0.25 * f for f in range(D_SAE)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("steering")
    model_dir = build_tiny_llama(root / "model")
    sae = BatchTopKSAE(32, D_SAE, 2, seed=3)
    with torch.no_grad():
        sae.W_dec.mul_(4.0)  # strong enough directions to change a tiny model's argmax
        sae.b_enc[DEAD] = -100.0  # never fires
    sae.save(root / "sae", {"name": "s", "model": "tiny", "hook": "h", "hook_spec": "hidden_states.0", "seed": 0,
                            "exclude_special_tokens": True})
    maxima = [None if f == DEAD else m for f, m in enumerate(MAXIMA)]
    pq.write_table(pa.table({"feature": list(range(D_SAE)), "n_active": [0 if f == DEAD else 100 - f
                                                                            for f in range(D_SAE)],
                             "max": maxima}), root / "stats.parquet")
    labels = [f"token{f}" for f in range(D_SAE)]
    labels[4], labels[9], labels[12] = "the fox jumps", "Fox den", "lazy dog"
    pq.write_table(pa.table({"feature": list(range(D_SAE)), "label": labels}), root / "labels.parquet")
    vectors = np.random.default_rng(0).normal(size=(2, 32)).astype(np.float32) * 3
    write_safetensors(root / "vectors.safetensors", {"vectors": vectors}, {"labels": json.dumps(["cats", "dogs"])})
    return root, model_dir, sae, vectors


def experiment(**settings):
    base = {"name": "e", "sae": "s", "prompts": ["The quick brown", "Snakemake builds"], "mode": "add",
            "alphas": [0.0, 2.0, -3.0], "max_new_tokens": 6, "ce_margin": 0.5, "seed": 0, "max_features": 1}
    return base | settings


def run(setup, tmp_path, settings):
    root, model_dir, _, _ = setup
    out = tmp_path / "steer.parquet"
    steering_job(settings, root / "sae", model_dir, model_dir, root / "stats.parquet", root / "labels.parquet", out,
                 vectors_path=root / "vectors.safetensors", prepend_bos=True)
    return pq.read_table(out).to_pylist()


def slow_greedy(lm, prompt, steps, shift, stop):
    """Greedy the slow way, `shift(embeddings [T, d]) -> [T, d]` added to the input embeddings."""
    ids = list(prompt)
    for _ in range(steps):
        with torch.no_grad():
            embeds = lm.get_input_embeddings()(torch.tensor(ids))
            chosen = int(lm(inputs_embeds=(embeds + shift(embeds))[None]).logits[0, -1].argmax())
        if chosen == stop:
            break
        ids.append(chosen)
    return ids[len(prompt):]


def ce_and_embeddings(lm, prompt, continuation):
    with torch.no_grad():
        ids = torch.tensor(prompt + continuation)
        log_probs = lm(input_ids=ids[None]).logits[0].double().log_softmax(-1).numpy()
        embeds = lm.get_input_embeddings()(ids).double().numpy()
    n = len(prompt)
    ce = -np.mean([log_probs[n - 1 + i, t] for i, t in enumerate(continuation)]) if continuation else None
    return ce, embeds[n:]


def check_rows(setup, rows, settings, targets, shift_of, activation_of):
    """Every row against the slow loop and numpy: texts, CEs, activations, margin, best alpha."""
    _, model_dir, _, _ = setup
    lm, tokenizer = load_model(model_dir), load_tokenizer(model_dir)
    stop = tokenizer.eos_token_id
    assert len(rows) == len(settings["prompts"]) * len(targets) * len(settings["alphas"])
    rows = iter(rows)
    for index, prompt in enumerate(settings["prompts"]):
        ids = [tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"]
        baseline = slow_greedy(lm, ids, settings["max_new_tokens"], lambda e: 0 * e, stop)
        baseline_ce, baseline_embeds = ce_and_embeddings(lm, ids, baseline)
        for target in targets:
            ces = []
            for alpha in settings["alphas"]:
                row = next(rows)
                steered = slow_greedy(lm, ids, settings["max_new_tokens"], shift_of(target, alpha), stop)
                ce, embeds = ce_and_embeddings(lm, ids, steered)
                ces.append(ce)
                assert (row["prompt_index"], row["prompt"], row["alpha"]) == (index, prompt, alpha)
                assert row["baseline"] == tokenizer.decode(baseline, skip_special_tokens=True)
                assert row["steered"] == tokenizer.decode(steered, skip_special_tokens=True)
                assert row["baseline_ce"] == pytest.approx(baseline_ce, rel=1e-4)
                assert row["steered_ce"] == pytest.approx(ce, rel=1e-4)
                assert row["steered_activation"] == pytest.approx(activation_of(target, embeds), rel=1e-4, abs=1e-5)
                assert row["baseline_activation"] == pytest.approx(activation_of(target, baseline_embeds), rel=1e-4,
                                                                   abs=1e-5)
                assert row["within_margin"] == (ce <= baseline_ce + settings["ce_margin"])
                yield row, target
            within = [ce <= baseline_ce + settings["ce_margin"] for ce in ces]
            assert row["best_alpha"] == best_alpha(settings["alphas"], within)


def test_add_steers_by_alpha_times_max_times_the_decoder_row(setup, tmp_path):
    _, _, sae, _ = setup
    W_dec = sae.W_dec.detach()
    settings = experiment(features=[2, 11])
    rows = run(setup, tmp_path, settings)

    def shift_of(feature, alpha):
        return lambda embeds: alpha * MAXIMA[feature] * W_dec[feature]

    def activation_of(feature, embeds):
        return numpy_encoding(sae, embeds)[:, feature].mean() if len(embeds) else None

    checked = list(check_rows(setup, rows, settings, [2, 11], shift_of, activation_of))
    assert {row["feature"] for row, _ in checked} == {2, 11}
    assert all(row["scale"] == MAXIMA[row["feature"]] and row["mode"] == "add" for row, _ in checked)
    assert any(row["steered"] != row["baseline"] for row, _ in checked)  # the test can fail
    assert all(row["steered"] == row["baseline"] for row, _ in checked if row["alpha"] == 0)


def test_clamp_sets_the_feature_and_keeps_the_error_term(setup, tmp_path):
    _, _, sae, _ = setup
    W_dec = sae.W_dec.detach()
    settings = experiment(features=[7], mode="clamp", alphas=[0.0, 1.0, 4.0])
    rows = run(setup, tmp_path, settings)

    def shift_of(feature, alpha):
        def shift(embeds):
            active = torch.from_numpy(numpy_encoding(sae, embeds.double().numpy())[:, feature]).float()
            return (alpha * MAXIMA[feature] - active)[:, None] * W_dec[feature]
        return shift

    def activation_of(feature, embeds):
        return numpy_encoding(sae, embeds)[:, feature].mean() if len(embeds) else None

    assert len(list(check_rows(setup, rows, settings, [7], shift_of, activation_of))) == 6


def test_clamping_a_feature_that_never_fires_to_zero_changes_nothing(setup, tmp_path):
    root, _, _, _ = setup
    stats = pq.read_table(root / "stats.parquet").to_pydict()
    stats["max"][DEAD] = 3.0  # give the dead feature a scale so the experiment may name it
    pq.write_table(pa.table(stats), tmp_path / "stats.parquet")
    out = tmp_path / "t.parquet"
    steering_job(experiment(features=[DEAD], mode="clamp", alphas=[0.0]), root / "sae", setup[1], setup[1],
                 tmp_path / "stats.parquet", root / "labels.parquet", out, prepend_bos=True)
    for row in pq.read_table(out).to_pylist():
        assert row["steered"] == row["baseline"] and row["steered_ce"] == row["baseline_ce"]
        assert row["steered_activation"] == 0.0 and row["best_alpha"] == 0.0


def test_a_label_vector_is_added_as_it_is(setup, tmp_path):
    _, _, _, vectors = setup
    settings = experiment(vector="dogs", alphas=[1.0, 2.5])
    rows = run(setup, tmp_path, settings)
    unit = vectors[1].astype(np.float64) / np.linalg.norm(vectors[1])

    def shift_of(_, alpha):
        return lambda embeds: alpha * torch.from_numpy(vectors[1])

    def activation_of(_, embeds):
        return (embeds @ unit).mean() if len(embeds) else None

    checked = list(check_rows(setup, rows, settings, ["dogs"], shift_of, activation_of))
    assert all(row["vector"] == "dogs" and row["feature"] is None and row["scale"] == 1.0 for row, _ in checked)


def test_the_same_config_gives_the_same_table(setup, tmp_path):
    settings = experiment(features=[3])
    assert run(setup, tmp_path, settings) == run(setup, tmp_path, settings)


def test_a_label_query_picks_the_most_active_matching_features(setup):
    root = setup[0]
    stats, labels = root / "stats.parquet", root / "labels.parquet"
    assert experiment_features(experiment(label="FOX", max_features=2), D_SAE, stats, labels) == [4, 9]
    assert experiment_features(experiment(label="fox"), D_SAE, stats, labels) == [4]
    with pytest.raises(SaeflowError, match="steering.e.label: no feature's label .* contains 'unicorn'"):
        experiment_features(experiment(label="unicorn"), D_SAE, stats, labels)


@pytest.mark.parametrize("settings, message", [
    (experiment(features=[16]), "steering.e.features: feature 16 is past the SAE's 16 features"),
    (experiment(features=[DEAD]), f"feature {DEAD} never fires"),
    (experiment(vector="birds"), "no label vector 'birds' .*it has cats, dogs.*set vector:"),
])
def test_bad_targets_are_one_clear_error(setup, tmp_path, settings, message):
    with pytest.raises(SaeflowError, match=message):
        run(setup, tmp_path, settings)
    assert not (tmp_path / "steer.parquet").exists()


def test_best_alpha_is_the_strongest_within_the_margin():
    assert best_alpha([0.5, 1.0, -2.0, 4.0], [True, True, True, False]) == -2.0
    assert best_alpha([-1.0, 1.0], [True, True]) == 1.0
    assert best_alpha([1.0], [False]) is None


def plan(steering, causal=True, labels=False, spec="hidden_states.1"):
    config = {"steering": [experiment(**s) for s in steering]}
    return steering_experiments(config, {"h": spec}, {"s": "h"}, {"s": 16}, causal, labels)


@pytest.mark.parametrize("steering, kwargs, message", [
    ([{"features": [1]}, {"features": [2]}], {}, "the name 'e' is used twice"),
    ([{"features": [1], "sae": "other"}], {}, "'other' is not a key of saes"),
    ([{"features": [1]}], {"causal": False}, "needs a causal LM"),
    ([{"features": [1]}], {"spec": "model.layers.0.mlp:input"}, "cannot be edited"),
    ([{"features": [3, 40]}], {}, "feature 40 is past s's 16 features"),
    ([{"vector": "x"}], {}, "label vectors need a corpus with labels"),
    ([{"vector": "x", "mode": "clamp"}], {"labels": True}, "can only be added"),
])
def test_the_plan_rejects_bad_experiments_before_any_job(steering, kwargs, message):
    with pytest.raises(SaeflowError, match=message):
        plan(steering, **kwargs)
    assert list(plan([{"features": [1]}])) == ["e"]
