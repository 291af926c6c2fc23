"""Pretrained SAELens-format SAEs rewritten as saeflow weights: each architecture's encoding and
reconstruction against its own formula in numpy, and against SAELens itself where installed."""

import json

import numpy as np
import pytest
import torch

from saeflow.errors import SaeflowError
from saeflow.pretrained import saeflow_weights
from saeflow.sae import BatchTopKSAE
from saeflow.storage import write_safetensors

D_IN, D_SAE, K = 6, 10, 3


def random_weights(seed, architecture):
    rng = np.random.default_rng(seed)
    weights = {"W_enc": rng.normal(size=(D_IN, D_SAE)), "b_enc": rng.normal(size=D_SAE) * 0.3,
               "W_dec": rng.normal(size=(D_SAE, D_IN)) * rng.uniform(0.5, 2, size=(D_SAE, 1)),
               "b_dec": rng.normal(size=D_IN) * 0.5}
    if architecture == "jumprelu":
        weights["threshold"] = rng.uniform(0, 0.8, size=D_SAE)
    return {name: array.astype(np.float32) for name, array in weights.items()}


def write_folder(folder, architecture, weights, **cfg):
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "sae_weights.safetensors", weights, {})
    (folder / "cfg.json").write_text(json.dumps({"architecture": architecture, "d_in": D_IN, "d_sae": D_SAE, **cfg}))
    return folder


def formula(architecture, w, x, apply_b_dec=True, k=None, rescale=False):
    """SAELens' encode and decode written out in numpy (float64)."""
    w = {name: array.astype(np.float64) for name, array in w.items()}
    pre = (x - w["b_dec"] * apply_b_dec) @ w["W_enc"] + w["b_enc"]
    norms = np.linalg.norm(w["W_dec"], axis=1)
    if architecture == "jumprelu":
        acts = np.maximum(pre, 0) * (pre > w["threshold"])
    elif architecture == "standard":
        acts = np.maximum(pre, 0)
    else:
        ranked = pre * norms if rescale else pre
        acts = np.zeros_like(pre)
        top = np.argsort(-ranked, axis=1)[:, :k]
        np.put_along_axis(acts, top, np.maximum(np.take_along_axis(ranked, top, 1), 0), 1)
    decoder = w["W_dec"] / norms[:, None] if rescale else w["W_dec"]
    return acts, acts @ decoder + w["b_dec"]


def as_saeflow(folder):
    weights, settings = saeflow_weights(folder)
    sae = BatchTopKSAE(settings["d_in"], settings["d_sae"], settings["k"] or 1, encoding=settings["encoding"])
    with torch.no_grad():
        for name, array in weights.items():
            getattr(sae, name).copy_(torch.from_numpy(array))
    return sae, settings


CASES = [("jumprelu", {}), ("standard", {}), ("standard", {"apply_b_dec_to_input": False}),
         ("topk", {"k": K}), ("topk", {"k": K, "rescale_acts_by_decoder_norm": True, "apply_b_dec_to_input": False})]


@pytest.mark.parametrize("architecture, cfg", CASES, ids=[f"{a}-{i}" for i, (a, _) in enumerate(CASES)])
def test_each_architecture_encodes_by_its_own_formula(tmp_path, architecture, cfg):
    weights = random_weights(1, architecture)
    sae, settings = as_saeflow(write_folder(tmp_path / "sae", architecture, weights, **cfg))
    x = np.random.default_rng(2).normal(size=(50, D_IN)) * 1.5
    acts, recon = formula(architecture, weights, x, cfg.get("apply_b_dec_to_input", True), cfg.get("k"),
                          cfg.get("rescale_acts_by_decoder_norm", False))
    with torch.no_grad():
        got = sae.encode(torch.from_numpy(x).float())
        np.testing.assert_allclose(got.numpy(), acts, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(sae.decode(got).numpy(), recon, rtol=1e-4, atol=1e-4)
    assert 0 < (acts > 0).mean() < 1  # the case exercises both sides of the activation
    assert settings["encoding"] == ("topk" if architecture == "topk" else "threshold")


@pytest.mark.parametrize("architecture", ["jumprelu", "standard", "topk"])
def test_folders_saelens_itself_wrote_encode_as_saelens_does(tmp_path, architecture):
    sae_lens = pytest.importorskip("sae_lens")
    config_class = {"jumprelu": sae_lens.JumpReLUSAEConfig, "standard": sae_lens.StandardSAEConfig,
                    "topk": sae_lens.TopKSAEConfig}[architecture]
    extra = {"k": K} if architecture == "topk" else {}
    theirs = sae_lens.SAE.from_dict(config_class(d_in=D_IN, d_sae=D_SAE, **extra).to_dict())
    torch.manual_seed(3)
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.5)
        if architecture == "jumprelu":
            theirs.threshold.copy_(torch.rand(D_SAE) * 0.5)
    theirs.save_model(tmp_path / "sae")
    ours, _ = as_saeflow(tmp_path / "sae")
    x = torch.randn(40, D_IN)
    with torch.no_grad():
        np.testing.assert_allclose(ours.encode(x).numpy(), theirs.encode(x).numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ours(x).numpy(), theirs(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("change, message", [
    (lambda f: (f / "cfg.json").unlink(), "has no cfg.json"),
    (lambda f: (f / "cfg.json").write_text('{"architecture": "gated"}'), "architecture 'gated'"),
    (lambda f: (f / "cfg.json").write_text('{"architecture": "jumprelu", "normalize_activations": '
                                            '"expected_average_only_in"}'), "normalize_activations"),
    (lambda f: write_safetensors(f / "sae_weights.safetensors",
                                 {k: v for k, v in random_weights(0, "jumprelu").items() if k != "threshold"}, {}),
     r"lacks \['threshold'\]"),
    (lambda f: write_safetensors(f / "sae_weights.safetensors",
                                 {**random_weights(0, "jumprelu"), "b_dec": np.zeros(4, np.float32)}, {}),
     r"`b_dec` has shape \[4\]"),
    (lambda f: (f / "cfg.json").write_text('{"architecture": "jumprelu", "d_sae": 99}'), "d_sae=99"),
])
def test_bad_folders_are_one_clear_error(tmp_path, change, message):
    folder = write_folder(tmp_path / "sae", "jumprelu", random_weights(0, "jumprelu"))
    change(folder)
    with pytest.raises(SaeflowError, match=message):
        saeflow_weights(folder, "saes.x.pretrained")


def test_the_plan_reads_the_shape_from_the_header(tmp_path):
    from saeflow.pretrained import pretrained_shape

    folder = write_folder(tmp_path / "sae", "topk", random_weights(0, "topk"), k=K)
    assert pretrained_shape(folder) == (D_IN, D_SAE)
    with pytest.raises(SaeflowError, match="saes.p.pretrained: .* has no cfg.json"):
        pretrained_shape(tmp_path / "absent", "saes.p.pretrained")


def test_the_import_job_writes_a_folder_saeflow_and_saelens_load(tmp_path):
    from saeflow.pretrained import import_pretrained_job
    from saeflow.storage import read_json

    weights = random_weights(4, "jumprelu")
    folder = write_folder(tmp_path / "in", "jumprelu", weights)
    cfg = import_pretrained_job(folder, "p", "layer-1", "hidden_states.1", "tiny", tmp_path / "out",
                                tmp_path / "out/training_log.parquet", D_IN)
    assert cfg == read_json(tmp_path / "out/cfg.json")
    assert (cfg["trained_as"], cfg["k"], cfg["encoding"], cfg["pretrained_architecture"]) == (
        "pretrained", None, "threshold", "jumprelu")
    sae, _ = BatchTopKSAE.load(tmp_path / "out")
    x = np.random.default_rng(5).normal(size=(30, D_IN))
    with torch.no_grad():
        np.testing.assert_allclose(sae.encode(torch.from_numpy(x).float()).numpy(), formula("jumprelu", weights, x)[0],
                                   rtol=1e-4, atol=1e-5)
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "out/training_log.parquet").num_rows == 0
    with pytest.raises(SaeflowError, match="reads 6 dimensions but hook layer-1 has 8"):
        import_pretrained_job(folder, "p", "layer-1", "hidden_states.1", "tiny", tmp_path / "x", tmp_path / "x.pq", 8)
