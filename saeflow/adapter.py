"""Put a PEFT (LoRA) adapter into a loaded Hugging Face model, keeping the model's module names.

The adapter's layers are injected into the model itself (PEFT's `get_base_model()`), so hook
paths read as in the base model plus the adapter's own modules:
`model.layers.3.self_attn.q_proj.lora_A.default`. Weights are read from safetensors only; an
adapter that does not fit the model (targets it lacks, other shapes, weights for modules it does
not have) is one clear error instead of PEFT's traceback, warning or silence.
"""

from __future__ import annotations

from pathlib import Path

from saeflow.errors import SaeflowError, single_line

_FIX = "set model.adapter to an adapter trained on this model, or null"


def check_adapter_folder(adapter_dir) -> Path:
    """The adapter's folder, refused (while planning too: no peft import) unless it holds a config and
    safetensors weights: a pickle adapter (adapter_model.bin) is never opened."""
    path = Path(adapter_dir).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise SaeflowError(f"model.adapter: {path} is not a PEFT adapter directory (no adapter_config.json); "
                           "point it at a folder saved with save_pretrained(), or set it to null")
    if not (path / "adapter_model.safetensors").is_file():
        raise SaeflowError(f"model.adapter: {path} has no adapter_model.safetensors (saeflow reads safetensors "
                           "only); save the adapter with save_pretrained(safe_serialization=True)")
    return path


def _adapter_config(adapter_dir):
    from peft import PeftConfig

    path = check_adapter_folder(adapter_dir)
    try:
        config = PeftConfig.from_pretrained(str(path))
    except (OSError, ValueError, TypeError, KeyError) as err:  # not JSON, or not a PEFT config
        raise SaeflowError(f"model.adapter: {path / 'adapter_config.json'} is not a readable PEFT config "
                           f"({single_line(err)}); save the adapter again with save_pretrained()") from None
    config.inference_mode = True
    return path, config


def _mismatch(path: Path, model, reason: str) -> SaeflowError:
    name = getattr(model.config, "_name_or_path", "") or type(model).__name__
    return SaeflowError(f"model.adapter: {path} was made for another model than {name} ({reason}); {_FIX}")


def apply_adapter(model, adapter_dir):
    """`model` in eval mode with the adapter at `adapter_dir` injected and its weights loaded."""
    from peft import PeftModel

    path, config = _adapter_config(adapter_dir)
    try:
        peft_model = PeftModel(model, config)
        result = peft_model.load_adapter(str(path), adapter_name="default")
    except (ValueError, RuntimeError) as err:  # targets the model lacks; size mismatch
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in lines if line.startswith("size mismatch")), lines[0] if lines else "")
        raise _mismatch(path, model, reason.split(". ")[0].rstrip(".")) from None
    # PEFT loads leniently: weights for modules the model lacks are dropped, missing ones stay at init.
    if result.unexpected_keys or result.missing_keys:
        keys = result.unexpected_keys or result.missing_keys
        what = "weights for modules it lacks" if result.unexpected_keys else "no weights for some adapted modules"
        raise _mismatch(path, model, f"{what}, e.g. {keys[0]}")
    return peft_model.get_base_model().eval()


def inject_adapter_layers(model, adapter_dir):
    """Inject the adapter's layers without loading weights (for a model on the meta device), so
    module names and widths can be read before any job runs."""
    from peft import inject_adapter_in_model

    path, config = _adapter_config(adapter_dir)
    try:
        return inject_adapter_in_model(config, model)
    except ValueError as err:
        raise _mismatch(path, model, str(err).split(". ")[0]) from None
