"""Edits of a hook's value and greedy generation, against numpy and a cache-free greedy loop."""

import numpy as np
import pytest
import torch

from saeflow.generation import greedy_continuations, score_continuations
from saeflow.hooks import replaced
from saeflow.interventions import add_direction, feature_activations, remove_feature, set_feature
from saeflow.model import load_model
from saeflow.sae import BatchTopKSAE
from tiny_models import build_tiny_llama


def numpy_encoding(sae, x):
    """The threshold encoding written out: pre where pre > threshold and pre > 0."""
    W_enc, b_enc, b_dec, theta = (getattr(sae, n).detach().double().numpy() for n in ("W_enc", "b_enc", "b_dec",
                                                                                       "threshold"))
    pre = (x - b_dec) @ W_enc + b_enc
    return np.where((pre > theta) & (pre > 0), pre, 0.0)


@pytest.fixture
def sae():
    torch.manual_seed(0)  # the tests' random values
    sae = BatchTopKSAE(8, 12, 2, seed=1)
    with torch.no_grad():
        sae.b_enc.copy_(torch.linspace(-0.5, 0.5, 12))
        sae.threshold.fill_(0.3)
    return sae


def test_add_direction_adds_each_rows_coefficient_at_every_position():
    value = torch.randn(3, 5, 8)
    direction = torch.randn(8)
    out = add_direction(direction, [0.0, 1.5, -2.0])(value)
    expected = value.numpy() + np.array([0.0, 1.5, -2.0])[:, None, None] * direction.numpy()
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(out[0], value[0])


def test_set_feature_moves_the_value_only_along_the_features_decoder_row(sae):
    value = torch.randn(2, 6, 8) * 2
    features, targets = [3, 7], [4.0, 0.0]
    out = set_feature(sae, features, targets)(value).double().numpy()
    x = value.double().numpy()
    for row, (feature, target) in enumerate(zip(features, targets)):
        acts = numpy_encoding(sae, x[row])
        change = target - acts[:, feature]
        expected = x[row] + change[:, None] * sae.W_dec[feature].detach().double().numpy()
        np.testing.assert_allclose(out[row], expected, rtol=1e-5, atol=1e-5)
        # The same as decoding the edited features and adding the SAE's error back.
        edited = acts.copy()
        edited[:, feature] = target
        W_dec, b_dec = sae.W_dec.detach().double().numpy(), sae.b_dec.detach().double().numpy()
        error = x[row] - (acts @ W_dec + b_dec)
        np.testing.assert_allclose(out[row], edited @ W_dec + b_dec + error, rtol=1e-4, atol=1e-4)


def test_clamping_an_inactive_feature_to_zero_changes_nothing_and_to_its_max_only_that_feature(sae):
    value = torch.randn(1, 7, 8)
    acts = numpy_encoding(sae, value[0].double().numpy())
    (inactive, *_) = np.flatnonzero((acts == 0).all(0))
    assert torch.equal(set_feature(sae, [inactive], [0.0])(value), value)
    assert torch.equal(remove_feature(sae, [inactive])(value), value)
    out = set_feature(sae, [inactive], [2.5])(value)
    np.testing.assert_allclose((out - value).numpy()[0], np.tile(2.5 * sae.W_dec[inactive].detach().numpy(), (7, 1)),
                               rtol=1e-5, atol=1e-6)


def test_feature_activations_pick_each_rows_feature(sae):
    value = torch.randn(2, 4, 8)
    got = feature_activations(sae, value, [1, 9]).numpy()
    for row, feature in enumerate([1, 9]):
        np.testing.assert_allclose(got[row], numpy_encoding(sae, value[row].double().numpy())[:, feature], atol=1e-5)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return load_model(build_tiny_llama(tmp_path_factory.mktemp("llama") / "model"))


def cache_free_greedy(lm, prompt, steps, embed_shift=None):
    """Greedy decoding the slow way: the whole text rerun each step, the shift added to the
    input embeddings (hidden_states.0) at every position."""
    ids = list(prompt)
    for _ in range(steps):
        embeds = lm.get_input_embeddings()(torch.tensor([ids]))
        if embed_shift is not None:
            embeds = embeds + embed_shift
        with torch.no_grad():
            ids.append(int(lm(inputs_embeds=embeds).logits[0, -1].argmax()))
    return ids[len(prompt):]


def test_greedy_with_a_cache_and_an_edit_per_row_equals_the_slow_loop(tiny_llama):
    prompt, direction = [1, 40, 41, 42], torch.randn(32) * 3
    with replaced(tiny_llama, "hidden_states.0", add_direction(direction, [0.0, 1.0, -1.0])):
        rows = greedy_continuations(tiny_llama, prompt, 3, 8, stop_ids=set())
    for row, coefficient in zip(rows, [0.0, 1.0, -1.0]):
        assert row == cache_free_greedy(tiny_llama, prompt, 8, coefficient * direction)
    assert rows[1] != rows[0] or rows[2] != rows[0]  # the edit reached the output


def test_greedy_stops_before_a_stop_token(tiny_llama):
    prompt = [1, 50, 51]
    full = cache_free_greedy(tiny_llama, prompt, 6)
    (cut,) = greedy_continuations(tiny_llama, prompt, 1, 6, stop_ids={full[2]})
    assert cut == full[: full.index(full[2])]


def test_scores_are_the_mean_ce_of_the_continuation_and_the_hook_values_at_it(tiny_llama):
    prompt, continuations = [1, 60, 61], [[70, 71, 72], [80], []]
    scored = score_continuations(tiny_llama, "hidden_states.1", prompt, continuations)
    for scores, continuation in zip(scored, continuations):
        if not continuation:
            assert scores.ce is None and scores.values.shape[0] == 0
            continue
        ids = torch.tensor([prompt + continuation])
        with torch.no_grad():
            out = tiny_llama(input_ids=ids, output_hidden_states=True)
        log_probs = out.logits[0].double().log_softmax(-1).numpy()
        expected = -np.mean([log_probs[len(prompt) - 1 + i, t] for i, t in enumerate(continuation)])
        assert scores.ce == pytest.approx(expected, rel=1e-5)
        np.testing.assert_allclose(scores.values.numpy(), out.hidden_states[1][0, len(prompt):].numpy(), atol=1e-5)
