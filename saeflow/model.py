"""Load a Hugging Face model directory and its tokenizer, strictly offline.

`saeflow.model_source` decides which directory that is (the packaged default is converted from
GGUF into results/model/ first); everything here reads a directory with a config.json.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from saeflow.errors import SaeflowError, single_line
from saeflow.model_source import (
    ModelShape,
    check_safetensors_weights,
    config_shape,
    quiet_transformers,
    read_model_config,
)

# Never reach a model hub at run time, whatever the caller's environment says: everything must
# come from local directories.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

DTYPES = ("float32", "float16", "bfloat16")


@lru_cache(maxsize=None)
def model_shape(path: str | Path) -> ModelShape:
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        raise SaeflowError(f"{path}: not a Hugging Face model directory (no config.json); rerun the workflow "
                           "to rebuild results/model/, or fix model.path")
    return config_shape(read_model_config(config_path), config_path)


def n_layers(path: str | Path) -> int:
    """Number of transformer blocks; hidden_states has n_layers + 1 entries (0 = embeddings)."""
    return model_shape(path).n_layers


def is_causal_lm(path: str | Path) -> bool:
    """Whether the checkpoint is a causal LM (it has a next-token head to measure CE with)."""
    return model_shape(path).causal_lm


def pick_device(setting: str) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise SaeflowError("model.device is 'cuda' but no CUDA device is available; set it to auto or cpu")
    return setting


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    fix = "point model.path at a folder saved with the model's tokenizer (tokenizer.save_pretrained())"
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as err:
        raise SaeflowError(f"model.path: cannot load a tokenizer from {path} ({single_line(err)}); {fix}") from None
    # Without its files, transformers builds the model type's tokenizer with an empty vocabulary.
    if tokenizer.vocab_size == 0:
        raise SaeflowError(f"model.path: cannot load a tokenizer from {path} (no tokenizer files); {fix}")
    return tokenizer


def _check_known_architecture(path: Path) -> None:
    """Refuse a model_type this transformers lacks: loading it would need the model's own code."""
    from transformers import CONFIG_MAPPING, __version__

    model_type = read_model_config(path / "config.json").get("model_type")
    if model_type is not None and model_type not in CONFIG_MAPPING:
        raise SaeflowError(f"model.path: {path / 'config.json'} has model_type {model_type!r}, which transformers "
                           f"{__version__} does not ship; saeflow never runs a model's own code (no "
                           "trust_remote_code), so use a model of an architecture transformers ships")


def load_model(path: str | Path, device: str = "cpu", dtype: str = "float32", adapter: str | Path | None = None):
    """The model in eval mode on `device`, with its next-token head where it is a causal LM (so
    module paths read as in `AutoModelForCausalLM`: `model.layers.3.mlp`), and the PEFT adapter
    at `adapter` injected (its `lora_A` / `lora_B` modules then appear under the adapted ones)."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    if dtype not in DTYPES:
        raise SaeflowError(f"model.dtype: {dtype!r} is not one of {DTYPES}")
    auto = AutoModelForCausalLM if is_causal_lm(path) else AutoModel
    _check_known_architecture(Path(path))
    check_safetensors_weights(Path(path))
    quiet_transformers()
    try:
        model = auto.from_pretrained(str(path), local_files_only=True, dtype=getattr(torch, dtype),
                                     use_safetensors=True, trust_remote_code=False)
    except Exception as err:
        raise SaeflowError(f"model.path: cannot load a model from {path} ({single_line(err)}); point model.path "
                           "at a folder saved with save_pretrained()") from None
    if adapter is not None:
        from saeflow.adapter import apply_adapter

        model = apply_adapter(model, adapter)
    return model.to(pick_device(device)).eval()


def special_token_wrapping(tokenizer, prepend_bos: bool = False) -> tuple[list[int], list[int]]:
    """The special token ids put before and after one input's content tokens.

    Found by encoding a probe text with and without special tokens, which works for any
    tokenizer ([CLS] … [SEP], a BOS only, or nothing at all). With `prepend_bos`, a tokenizer that
    puts nothing before the content gets its BOS there (as SAELens does), so the model's
    attention sink falls on a special token rather than on each window's first word.
    """
    probe = "saeflow probe text"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    wrapped = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(wrapped) - len(plain) + 1):
        if wrapped[start : start + len(plain)] == plain:
            prefix, suffix = list(wrapped[:start]), list(wrapped[start + len(plain) :])
            if prepend_bos and not prefix and tokenizer.bos_token_id is not None:
                prefix = [tokenizer.bos_token_id]
            return prefix, suffix
    raise SaeflowError("model.path: cannot find how the tokenizer adds special tokens")


def unembedding(path: str | Path):
    """W_U [d_model, vocab] float32: the output head's weights, all rows, no final norm folded in;
    the input embedding transposed where the model has no LM head (an encoder)."""
    import torch

    model = load_model(path, "cpu", "float32")
    head = model.get_output_embeddings() if is_causal_lm(path) else None
    weight = (head if head is not None else model.get_input_embeddings()).weight
    with torch.no_grad():
        return weight.T.contiguous().numpy()
