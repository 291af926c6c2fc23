"""The cfg.json keys that let SAELens load an SAE folder with its own loader
(`sae_lens.SAE.load_from_disk(folder)`). Plain data: imports neither torch nor sae_lens."""

from __future__ import annotations

# The sae-lens release these keys were checked against (requirements-test.txt pins it).
SAELENS_VERSION = "6.54.12"


def saelens_cfg(
    *, d_in: int, d_sae: int, encoding: str, k: int, hook_name: str, model_name: str, device: str = "cpu"
) -> dict:
    """cfg.json keys SAELens needs, to merge beside ours (checked against sae-lens 6.54.12).

    How SAELens reads cfg.json: `architecture` picks its SAE class; keys that are not fields of
    that class's config are dropped (so our own keys are harmless); `metadata` becomes its
    SAEMetadata. Without a `sae_lens_version` >= 6.0 the dict goes through its pre-6.0
    converter, which rebuilds `metadata` from top-level keys and loses model and hook names:
    hence the version in `metadata`. Its encode is
    act((x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc) and its decode f @ W_dec + b_dec,
    with no input normalisation under "none": our formulas on raw activations.

    - encoding "threshold" -> architecture "jumprelu": features relu(pre) * (pre > threshold),
      equal to ours since θ >= 0. Weights: W_enc, b_enc, W_dec, b_dec, threshold (named as ours).
    - encoding "topk" -> architecture "topk" with `k`: per token, the k largest pre, then relu;
      equal to the k largest relu(pre). Its loader is strict: the weights file must NOT hold
      `threshold` (an unexpected key fails the load), only W_enc, b_enc, W_dec, b_dec.
      `rescale_acts_by_decoder_norm` stays False: rows of W_dec have unit norm anyway.
    """
    if encoding not in ("threshold", "topk"):
        raise ValueError(f"encoding={encoding!r} is invalid: use 'threshold' or 'topk'")
    cfg = {
        "architecture": "jumprelu" if encoding == "threshold" else "topk",
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": device,
        "apply_b_dec_to_input": True,  # pre = (x - b_dec) @ W_enc + b_enc
        "normalize_activations": "none",  # weights already work on raw activations
        "reshape_activations": "none",
        "metadata": {"sae_lens_version": SAELENS_VERSION, "model_name": model_name, "hook_name": hook_name},
    }
    if encoding == "topk":
        cfg["k"] = k
    return cfg
