"""Pretrained SAEs saved in SAELens' format (a folder with cfg.json and sae_weights.safetensors),
rewritten as saeflow SAEs so that eval, the feature store, the analyses and the dashboard run on
them unchanged.

SAELens encodes act((x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc) and decodes
f @ W_dec + b_dec. Each supported architecture is one of saeflow's two encodings after exact
rewrites of the weights:
- `jumprelu`: relu(pre) * (pre > threshold) is the `threshold` encoding with its thresholds;
- `standard`: relu(pre) is the `threshold` encoding with thresholds 0;
- `topk`: the k largest relu(pre) per token is the `topk` encoding with its k; with
  `rescale_acts_by_decoder_norm` SAELens ranks pre * ||W_dec row|| and decodes f / ||row||, which
  is the same SAE with those norms folded into W_enc, b_enc and W_dec (unit rows).
`apply_b_dec_to_input: false` folds into b_enc (b_enc + b_dec @ W_enc), since saeflow always
subtracts b_dec. Input normalisation other than "none" has no fixed weights to fold and is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from saeflow import storage
from saeflow.errors import SaeflowError

ARCHITECTURES = ("jumprelu", "standard", "topk")
WEIGHT_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")
# The folder is the user's, not the workflow's: the fix is to point at a sound one.
SUPPLY = "give the folder SAELens saved for this SAE (cfg.json and sae_weights.safetensors)"


def _cfg(folder: Path, key: str) -> dict:
    path = folder / "cfg.json"
    if not path.is_file():
        raise SaeflowError(f"{key}: {folder} has no cfg.json; give a folder saved by SAELens "
                           "(cfg.json + sae_weights.safetensors)")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SaeflowError(f"{key}: {path} is not JSON ({getattr(err, 'msg', err)}); {SUPPLY}") from None
    if not isinstance(cfg, dict):
        raise SaeflowError(f"{key}: {path} holds a JSON {type(cfg).__name__}, not an object; {SUPPLY}")
    architecture = cfg.get("architecture", "standard")
    if architecture not in ARCHITECTURES:
        raise SaeflowError(f"{key}: {path} has architecture {architecture!r}; saeflow analyses "
                           f"{', '.join(ARCHITECTURES)}")
    normalisation = cfg.get("normalize_activations") or "none"
    if normalisation != "none":
        raise SaeflowError(f"{key}: {path} sets normalize_activations={normalisation!r}, a scaling SAELens "
                           "estimates at run time; fold it into the weights and save with \"none\"")
    return cfg


def _weights(folder: Path, cfg: dict, key: str) -> dict[str, np.ndarray]:
    path = folder / "sae_weights.safetensors"
    needed = [*WEIGHT_NAMES, *(["threshold"] if cfg.get("architecture") == "jumprelu" else [])]
    try:
        arrays = storage.read_safetensors(path, fix=SUPPLY)
        missing = [name for name in needed if name not in arrays]
        if missing:
            raise storage.damaged(path, f"lacks {missing}; a {cfg.get('architecture', 'standard')} SAE needs "
                                  f"{needed}", SUPPLY)
        storage.check_tensors(path, arrays, {"W_enc": (None, None)}, None, SUPPLY)
        d_in, d_sae = arrays["W_enc"].shape
        shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,),
                  "threshold": (d_sae,)}  # W_enc fixes the sizes
        storage.check_tensors(path, arrays, {name: shapes[name] for name in needed}, None, SUPPLY)
    except SaeflowError as err:
        raise SaeflowError(f"{key}: {err}") from None
    for name, size in (("d_in", d_in), ("d_sae", d_sae)):
        if name in cfg and cfg[name] != size:
            raise SaeflowError(f"{key}: {folder / 'cfg.json'} says {name}={cfg[name]} but the weights have {size}; "
                               f"{SUPPLY}")
    return {name: arrays[name].astype(np.float64) for name in needed}


def saeflow_weights(folder, key: str = "pretrained") -> tuple[dict[str, np.ndarray], dict]:
    """The SAE in `folder` as saeflow weights (W_enc, b_enc, W_dec, b_dec, threshold; float32,
    encoding the same features from raw activations) and its settings: `encoding`, `k`
    (topk only, else None), `architecture`, `d_in`, `d_sae`. `key` names the config key in errors."""
    folder = Path(folder)
    cfg = _cfg(folder, key)
    w = _weights(folder, cfg, key)
    architecture = cfg.get("architecture", "standard")
    d_in, d_sae = w["W_enc"].shape
    b_enc = w["b_enc"] if cfg.get("apply_b_dec_to_input", True) else w["b_enc"] + w["b_dec"] @ w["W_enc"]
    W_enc, W_dec, threshold, k = w["W_enc"], w["W_dec"], w.get("threshold", np.zeros(d_sae)), None
    if architecture == "topk":
        k = cfg.get("k")
        if not isinstance(k, int) or not 1 <= k < d_sae:
            raise SaeflowError(f"{key}: {folder / 'cfg.json'}: a topk SAE needs an integer k between 1 and "
                               f"{d_sae - 1}, not {k!r}")
        if cfg.get("rescale_acts_by_decoder_norm", False):
            norms = np.linalg.norm(W_dec, axis=1)
            if not (norms > 0).all():
                raise SaeflowError(f"{key}: {folder}: a decoder row is zero, so its norm cannot be folded")
            W_enc, b_enc, W_dec = W_enc * norms, b_enc * norms, W_dec / norms[:, None]
    weights = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": w["b_dec"], "threshold": threshold}
    settings = {"architecture": architecture, "encoding": "topk" if architecture == "topk" else "threshold",
                "k": k, "d_in": int(d_in), "d_sae": int(d_sae)}
    return {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in weights.items()}, settings


def pretrained_shape(folder, key: str = "pretrained") -> tuple[int, int]:
    """(d_in, d_sae) of the SAE in `folder`, from the weights file's header (no tensor is read):
    the plan needs the SAE's width and the hook's before any job runs."""
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    _cfg(folder, key)
    path = folder / "sae_weights.safetensors"
    if not path.is_file():
        raise SaeflowError(f"{key}: {folder} has no sae_weights.safetensors; give a folder saved by SAELens")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            shape = handle.get_slice("W_enc").get_shape() if "W_enc" in handle.keys() else None
    except (SafetensorError, OSError) as err:
        raise SaeflowError(f"{key}: {path} is not a readable safetensors file ({err}); {SUPPLY}") from None
    if shape is None or len(shape) != 2:
        raise SaeflowError(f"{key}: {path} has no 2-D W_enc; {SUPPLY}")
    return int(shape[0]), int(shape[1])


def import_pretrained_job(folder, name: str, hook: str, hook_spec, model_name: str, out_dir, training_log_path,
                          hook_width: int) -> dict:
    """results/saes/<name>/: the pretrained SAE in `folder` as a saeflow SAE (sae_weights,
    cfg.json with `trained_as: "pretrained"`) and an empty training_log.parquet (it was not
    trained here); the cfg written."""
    import torch

    from saeflow.sae import BatchTopKSAE
    from saeflow.train_job import LOG_COLUMNS, LOG_SCHEMA

    key = f"saes.{name}.pretrained"
    weights, settings = saeflow_weights(folder, key)
    if settings["d_in"] != hook_width:
        raise SaeflowError(f"{key}: the SAE in {folder} reads {settings['d_in']} dimensions but hook {hook} "
                           f"has {hook_width}; point the SAE at the hook it was trained on")
    sae = BatchTopKSAE(settings["d_in"], settings["d_sae"], settings["k"], encoding=settings["encoding"])
    with torch.no_grad():
        for weight, array in weights.items():
            getattr(sae, weight).copy_(torch.from_numpy(array))
    cfg = sae.save(out_dir, {"name": name, "model": model_name, "hook": hook, "hook_spec": hook_spec, "seed": 0,
                             "exclude_special_tokens": True, "trained_as": "pretrained", "pretrained": str(folder),
                             "pretrained_architecture": settings["architecture"]})
    storage.write_parquet(training_log_path, {column: [] for column in LOG_COLUMNS}, LOG_SCHEMA)
    return cfg
