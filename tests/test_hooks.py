"""Hook points against hand computations from the weights: module outputs and inputs, LoRA A·x,
hidden_states, list order, early stop, width discovery on the meta device, replacement."""

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from saeflow import hooks
from saeflow.errors import SaeflowError
from saeflow.hooks import capture, check_hook_spec, describe_hooks, module_names, parse_hook_spec, replaced
from saeflow.model import load_model
from saeflow.model_source import ModelSource
from tiny_models import build_lora_adapter, build_tiny_llama

IDS = torch.tensor([[1, 17, 42, 99, 7, 250, 3], [1, 5, 64, 128, 0, 0, 0]])
MASK = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
R = 4
Q_A = "model.layers.0.self_attn.q_proj.lora_A.default"
V_A = "model.layers.0.self_attn.v_proj.lora_A.default"


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def adapter_dir(llama_dir, tmp_path_factory):
    return build_lora_adapter(llama_dir, tmp_path_factory.mktemp("lora"), r=R)


@pytest.fixture(scope="module")
def llama(llama_dir):
    return load_model(llama_dir)


@pytest.fixture(scope="module")
def lora_llama(llama_dir, adapter_dir):
    return load_model(llama_dir, adapter=adapter_dir)


def weights(model_dir):
    return {k: v.astype(np.float64) for k, v in load_file(str(model_dir / "model.safetensors")).items()}


def rmsnorm(x, weight, eps):
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * weight


def first_sequence(values):
    """Row 0 of the batch (the unpadded sequence), as float64 numpy."""
    return {name: value[0].double().numpy() for name, value in values.items()}


def test_specs_parse_and_malformed_ones_are_one_line():
    assert parse_hook_spec(["hidden_states.3", "a.b.0.c", "a.b:input"]) == [
        hooks.Site("hidden_states", 3), hooks.Site("output", "a.b.0.c"), hooks.Site("input", "a.b")]
    for bad in ("", [], "a.b:output", "hidden_states.x", "hidden_states.-1", "a..b", 3, ["a", 3], [["a"]]):
        with pytest.raises(SaeflowError, match=r"^hooks\.x: .* is not a hook spec") as err:
            parse_hook_spec(bad, "hooks.x")
        assert "\n" not in str(err.value)


def test_module_outputs_and_inputs_equal_hand_forwards(llama_dir, llama):
    w = weights(llama_dir)
    eps = llama.config.rms_norm_eps
    got = first_sequence(capture(llama, {
        "norm": "model.layers.0.input_layernorm", "mlp_in": "model.layers.0.mlp:input", "mlp": "model.layers.0.mlp",
    }, IDS, MASK))
    x = w["model.embed_tokens.weight"][IDS[0].numpy()]
    np.testing.assert_allclose(got["norm"], rmsnorm(x, w["model.layers.0.input_layernorm.weight"], eps), atol=1e-5)
    # The MLP from its own captured input: down(silu(gate(x)) * up(x)).
    h = got["mlp_in"]
    gate = h @ w["model.layers.0.mlp.gate_proj.weight"].T
    up = h @ w["model.layers.0.mlp.up_proj.weight"].T
    expected = (gate / (1 + np.exp(-gate)) * up) @ w["model.layers.0.mlp.down_proj.weight"].T
    np.testing.assert_allclose(got["mlp"], expected, atol=1e-5)


def test_lora_a_x_and_the_adapted_projection_equal_hand_computations(llama_dir, adapter_dir, lora_llama):
    w = weights(llama_dir)
    lora = {k: v.astype(np.float64) for k, v in load_file(str(adapter_dir / "adapter_model.safetensors")).items()}
    prefix = "base_model.model.model.layers.0.self_attn"
    A_q, B_q = lora[f"{prefix}.q_proj.lora_A.weight"], lora[f"{prefix}.q_proj.lora_B.weight"]
    A_v = lora[f"{prefix}.v_proj.lora_A.weight"]
    scale = json.loads((adapter_dir / "adapter_config.json").read_text())["lora_alpha"] / R
    x = rmsnorm(w["model.embed_tokens.weight"][IDS[0].numpy()], w["model.layers.0.input_layernorm.weight"],
                lora_llama.config.rms_norm_eps)

    got = first_sequence(capture(lora_llama, {"qA": Q_A, "q": "model.layers.0.self_attn.q_proj",
                                              "qv": [Q_A, V_A], "vq": [V_A, Q_A]}, IDS, MASK))
    np.testing.assert_allclose(got["qA"], x @ A_q.T, atol=1e-5)
    # The adapted projection is W x + scale · B A x, with B non-zero: the adapter really is loaded.
    q = x @ w["model.layers.0.self_attn.q_proj.weight"].T + scale * (x @ A_q.T @ B_q.T)
    np.testing.assert_allclose(got["q"], q, atol=1e-5)
    assert np.abs(scale * (x @ A_q.T @ B_q.T)).max() > 1e-2
    # Lists concatenate in list order.
    np.testing.assert_allclose(got["qv"], np.concatenate([x @ A_q.T, x @ A_v.T], -1), atol=1e-5)
    np.testing.assert_allclose(got["vq"], np.concatenate([x @ A_v.T, x @ A_q.T], -1), atol=1e-5)


@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_every_hidden_state_equals_the_models_own_and_padding_changes_nothing(which, llama, tiny_lm):
    model = llama if which == "llama" else load_model(tiny_lm)
    n = model.config.num_hidden_layers
    got = capture(model, {f"h{L}": f"hidden_states.{L}" for L in range(n + 1)}, IDS, MASK)
    with torch.no_grad():
        for row in range(len(IDS)):
            length = int(MASK[row].sum())
            alone = model(input_ids=IDS[row : row + 1, :length], output_hidden_states=True).hidden_states
            for L in range(n + 1):
                np.testing.assert_allclose(got[f"h{L}"][row, :length].numpy(), alone[L][0].numpy(), atol=1e-5)


def test_capture_stops_after_the_deepest_hook(llama):
    calls = []
    handles = [llama.model.layers[-1].register_forward_hook(lambda *a: calls.append("last block")),
               llama.lm_head.register_forward_hook(lambda *a: calls.append("head"))]
    try:
        got = capture(llama, {"h1": "hidden_states.1", "mlp0": "model.layers.0.mlp"}, IDS, MASK)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == []
    with torch.no_grad():
        full = llama(input_ids=IDS, attention_mask=MASK, output_hidden_states=True).hidden_states[1]
    np.testing.assert_allclose(got["h1"][0].numpy(), full[0].numpy(), atol=1e-6)


def test_a_bad_module_path_lists_near_matches_on_one_line(llama):
    names = module_names(llama)
    with pytest.raises(SaeflowError) as err:
        check_hook_spec(["hidden_states.1", "model.layer.1.mlp"], names, 2, "hooks.mlp1", "tiny")
    message = str(err.value)
    assert message.startswith("hooks.mlp1: no module 'model.layer.1.mlp' in tiny; did you mean model.layers.1.mlp")
    assert "\n" not in message and message.count(",") <= 4
    with pytest.raises(SaeflowError, match=r"^hooks\.h: hidden_states\.3 is out of range .*between 0 and 2$"):
        check_hook_spec("hidden_states.3", names, 2, "hooks.h")
    with pytest.raises(SaeflowError, match=r"^hooks\.m: no module 'model\.layers\.0\.mpl'"):
        capture(llama, {"m": "model.layers.0.mpl"}, IDS, MASK)


def test_widths_come_from_a_meta_forward_and_are_cached(llama_dir, adapter_dir, tmp_path, monkeypatch):
    model = ModelSource(llama_dir, "tiny")
    specs = {"qA": Q_A, "mlp": "model.layers.1.mlp", "both": [Q_A, V_A, "hidden_states.2"],
             "down_in": "model.layers.0.mlp.down_proj:input", "h": "hidden_states.0"}
    widths = describe_hooks(model, adapter_dir, specs, tmp_path)
    assert widths == {"qA": R, "mlp": 32, "both": 2 * R + 32, "down_in": 64, "h": 32}
    with pytest.raises(SaeflowError, match=r"^hooks\.bad: no module .* did you mean model\.layers\.0\.mlp"):
        describe_hooks(model, None, {"bad": "model.layers.0.mpl"}, tmp_path)
    # A second plan reads the cache: the meta model is never built again.
    monkeypatch.setattr(hooks, "_meta_widths", lambda *a: pytest.fail("cache not used"))
    assert describe_hooks(model, adapter_dir, specs, tmp_path) == widths


def test_a_cached_description_never_imports_torch(llama_dir, adapter_dir, tmp_path):
    specs = {"qA": Q_A}
    describe_hooks(ModelSource(llama_dir, "tiny"), adapter_dir, specs, tmp_path)
    code = ("import sys; from pathlib import Path; from saeflow.hooks import describe_hooks; "
            "from saeflow.model_source import ModelSource; "
            f"print(describe_hooks(ModelSource(Path({str(llama_dir)!r}), 'tiny'), {str(adapter_dir)!r}, {specs!r}, "
            f"{str(tmp_path)!r}), 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "{'qA': 4} False"


def test_an_adapter_for_another_model_is_one_clear_error(tmp_path, llama_dir, tiny_lm):
    cases = {  # a wider Llama's, a deeper Llama's (PEFT would drop layer 2 silently), GPT-2's
        build_lora_adapter(build_tiny_llama(tmp_path / "wide", hidden=48), tmp_path / "a-wide"): r"size mismatch",
        build_lora_adapter(build_tiny_llama(tmp_path / "deep", n_layer=3), tmp_path / "a-deep"):
            r"weights for modules it lacks, e\.g\. .*layers\.2\.",
        build_lora_adapter(tiny_lm, tmp_path / "a-gpt2", target_modules=("c_attn",)): r"c_attn",
    }
    for adapter, reason in cases.items():
        with pytest.raises(SaeflowError, match=rf"^model\.adapter: .* was made for another model .*{reason}.*; "
                                               r"set model\.adapter to an adapter trained on this model") as err:
            load_model(llama_dir, adapter=adapter)
        assert "\n" not in str(err.value)
    with pytest.raises(SaeflowError, match=r"^model\.adapter: .* was made for another model .*c_attn"):
        describe_hooks(ModelSource(llama_dir, "tiny"), tmp_path / "a-gpt2", {"a": Q_A}, tmp_path / "cache")
    with pytest.raises(SaeflowError, match=r"^model\.adapter: .*missing is not a PEFT adapter directory"):
        load_model(llama_dir, adapter=tmp_path / "missing")


def test_replacing_a_hidden_state_by_itself_changes_nothing_and_by_zeros_what_it_should(llama):
    n = llama.config.num_hidden_layers
    with torch.no_grad():
        clean = llama(input_ids=IDS, attention_mask=MASK).logits
        for L in range(n + 1):
            with replaced(llama, f"hidden_states.{L}", lambda h: h):
                np.testing.assert_array_equal(llama(input_ids=IDS, attention_mask=MASK).logits.numpy(), clean.numpy())
            with replaced(llama, f"hidden_states.{L}", torch.zeros_like):
                zeroed = llama(input_ids=IDS, attention_mask=MASK).logits
            assert not torch.allclose(zeroed, clean, atol=1e-3)
        # The last hidden state zero: the (bias-free) head gives zero logits.
        assert float(zeroed.abs().max()) == 0.0
    assert not llama.lm_head._forward_pre_hooks and not llama.model.layers[0]._forward_pre_hooks


def test_replacing_a_module_output_equals_the_model_with_that_module_silenced(llama):
    silenced = copy.deepcopy(llama)
    with torch.no_grad():
        silenced.model.layers[1].mlp.down_proj.weight.zero_()  # the MLP's output is then zero
        expected = silenced(input_ids=IDS, attention_mask=MASK).logits
        with replaced(llama, "model.layers.1.mlp", torch.zeros_like):
            got = llama(input_ids=IDS, attention_mask=MASK).logits
        clean = llama(input_ids=IDS, attention_mask=MASK).logits
        with replaced(llama, "model.layers.1.self_attn", lambda a: a):  # attention returns a tuple
            same = llama(input_ids=IDS, attention_mask=MASK).logits
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-6)
    assert not torch.allclose(got, clean, atol=1e-3)
    np.testing.assert_array_equal(same.numpy(), clean.numpy())
    for spec in ("model.layers.1.mlp:input", ["hidden_states.1", "hidden_states.2"]):
        with pytest.raises(SaeflowError, match="only one module output or one hidden_states"):
            with replaced(llama, spec, torch.zeros_like):
                pass
