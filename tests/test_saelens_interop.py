"""SAELens interop (issue 9 item 5): an SAE folder in our format (ARTIFACTS.md, saes/<name>/)
loads with SAELens' own loader, and SAELens' encode/decode equal our formulas, computed here in
plain numpy. Needs sae-lens (requirements-test.txt); skipped where it is not installed.

tests/test_workflow.py reuses `assert_saelens_matches` on an SAE the pipeline wrote."""

import json
from pathlib import Path

import numpy as np
import pytest

sae_lens = pytest.importorskip("sae_lens")

import torch  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from saeflow.saelens_format import saelens_cfg  # noqa: E402

# SAELens runs in float32, the oracle in float64: an entry within MARGIN (relative to the
# largest |pre|) of a decision boundary may fall either way under float32 rounding.
MARGIN = 1e-4


def numpy_oracle(w: dict, cfg: dict, x_ND: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(features, rows whose encoding float32 rounding could flip), by ARTIFACTS.md:
    pre = (x - b_dec) @ W_enc + b_enc; "threshold": pre where pre > threshold, else 0;
    "topk": each row's k largest relu(pre), the rest 0."""
    pre_NF = (x_ND.astype(np.float64) - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    margin = MARGIN * max(1.0, np.abs(pre_NF).max())
    if cfg["encoding"] == "threshold":
        f_NF = np.where(pre_NF > w["threshold"], pre_NF, 0.0)
        return f_NF, (np.abs(pre_NF - w["threshold"]) < margin).any(axis=1)
    k = cfg["k"]
    act_NF = np.maximum(pre_NF, 0.0)
    top_NK = np.argsort(-act_NF, axis=1)[:, :k]
    f_NF = np.zeros_like(act_NF)
    np.put_along_axis(f_NF, top_NK, np.take_along_axis(act_NF, top_NK, axis=1), axis=1)
    # A near-tie of the k-th and (k+1)-th largest decides which latent fires (ties at 0 don't).
    sorted_NF = -np.sort(-act_NF, axis=1)
    kth_N, next_N = sorted_NF[:, k - 1], sorted_NF[:, k]
    return f_NF, (kth_N - next_N < margin) & (kth_N >= margin)


def assert_saelens_matches(folder: Path, rows_ND: np.ndarray) -> None:
    """Load `folder` with SAELens' own loader; check its encode against the numpy oracle built
    from the folder's sae_weights.safetensors and cfg.json (its "encoding"), and its decode
    against features @ W_dec + b_dec, on `rows_ND` (float32 tolerances). Rows that float32
    rounding could encode either way are left out of the encode check; at most half may be."""
    folder = Path(folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    w = {name: a.astype(np.float64) for name, a in load_file(folder / "sae_weights.safetensors").items()}
    sae = sae_lens.SAE.load_from_disk(folder)
    assert type(sae) is (sae_lens.JumpReLUSAE if cfg["encoding"] == "threshold" else sae_lens.TopKSAE)
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (cfg["d_in"], cfg["d_sae"])

    with torch.no_grad():
        lens_f_NF = sae.encode(torch.from_numpy(np.ascontiguousarray(rows_ND, dtype=np.float32)))
        lens_recon_ND = sae.decode(lens_f_NF).numpy()
    lens_f_NF = lens_f_NF.numpy()

    f_NF, ambiguous_N = numpy_oracle(w, cfg, rows_ND)
    keep_N = ~ambiguous_N
    assert keep_N.mean() >= 0.5, "too many rows sit on a decision boundary to compare"
    atol_f = 1e-5 * max(1.0, np.abs(f_NF).max())
    np.testing.assert_array_equal(lens_f_NF[keep_N] != 0, f_NF[keep_N] != 0)
    np.testing.assert_allclose(lens_f_NF[keep_N], f_NF[keep_N], rtol=1e-4, atol=atol_f)
    # Decode alone, on SAELens' own features (every row), then end to end against the oracle.
    recon_ND = lens_f_NF @ w["W_dec"] + w["b_dec"]
    atol_x = 1e-5 * max(1.0, np.abs(recon_ND).max())
    np.testing.assert_allclose(lens_recon_ND, recon_ND, rtol=1e-4, atol=atol_x)
    oracle_recon_ND = f_NF @ w["W_dec"] + w["b_dec"]
    np.testing.assert_allclose(lens_recon_ND[keep_N], oracle_recon_ND[keep_N], rtol=1e-4, atol=atol_x)


def write_sae_folder(folder: Path, encoding: str, d_in: int = 16, d_sae: int = 64, k: int = 4) -> None:
    """A random SAE in our folder format, written by hand (not by saeflow.sae)."""
    rng = np.random.default_rng(0)
    W_dec = rng.normal(size=(d_sae, d_in))
    weights = {
        "W_enc": rng.normal(size=(d_in, d_sae)) / np.sqrt(d_in),
        "b_enc": rng.normal(scale=0.1, size=d_sae),
        "W_dec": W_dec / np.linalg.norm(W_dec, axis=1, keepdims=True),
        "b_dec": rng.normal(scale=0.5, size=d_in),
    }
    if encoding == "threshold":
        weights["threshold"] = rng.uniform(0.05, 1.0, size=d_sae)
    # else: SAELens' topk loader is strict, so a topk folder holds no `threshold` tensor.
    folder.mkdir(parents=True)
    save_file({name: np.ascontiguousarray(a, dtype=np.float32) for name, a in weights.items()},
              str(folder / "sae_weights.safetensors"))
    ours = {
        "name": "default", "d_in": d_in, "d_sae": d_sae, "k": k,
        "architecture": "jumprelu" if encoding == "threshold" else "topk",
        "trained_as": "batchtopk", "encoding": encoding, "model": "tiny-lm",
        "hook": "hidden_states.3", "hook_spec": {"layer": 3}, "seed": 0,
    }
    extra = saelens_cfg(d_in=d_in, d_sae=d_sae, encoding=encoding, k=k,
                        hook_name="hidden_states.3", model_name="tiny-lm")
    (folder / "cfg.json").write_text(json.dumps({**extra, **ours}))


@pytest.mark.parametrize("encoding", ["threshold", "topk"])
def test_saelens_loads_our_folder_and_matches_numpy(tmp_path, encoding):
    folder = tmp_path / "sae"
    write_sae_folder(folder, encoding)
    rows_ND = np.random.default_rng(1).normal(size=(256, 16)).astype(np.float32)
    assert_saelens_matches(folder, rows_ND)
    # SAELens keeps what it was told about the model and hook.
    meta = sae_lens.SAE.load_from_disk(folder).cfg.metadata
    assert (meta.model_name, meta.hook_name) == ("tiny-lm", "hidden_states.3")


def test_saelens_cfg_rejects_unknown_encoding():
    with pytest.raises(ValueError, match="encoding"):
        saelens_cfg(d_in=4, d_sae=8, encoding="relu", k=2, hook_name="h", model_name="m")
