"""The model loader's guarantees: offline whatever the environment, and W_U as the contract defines it."""

import os
import subprocess
import sys

import numpy as np
from safetensors.numpy import load_file

from saeflow.model import unembedding


def test_importing_the_loader_forces_hub_offline_mode():
    env = dict(os.environ, HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0")
    code = "import os, saeflow.model; print(os.environ['HF_HUB_OFFLINE'], os.environ['TRANSFORMERS_OFFLINE'])"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["1", "1"]


def test_unembedding_of_a_causal_lm_is_its_output_head_transposed(tiny_lm):
    weights = load_file(str(tiny_lm / "model.safetensors"))
    head = weights.get("lm_head.weight", weights["transformer.wte.weight"])  # GPT-2 ties the head to wte
    np.testing.assert_array_equal(unembedding(tiny_lm), head.T)


def test_unembedding_of_an_encoder_is_its_input_embedding_transposed(minilm):
    weights = load_file(str(minilm / "model.safetensors"))
    (name,) = [key for key in weights if key.endswith("word_embeddings.weight")]
    W_U = unembedding(minilm)
    assert W_U.shape == (384, 30522)
    np.testing.assert_array_equal(W_U, weights[name].T)
