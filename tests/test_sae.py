"""BatchTopKSAE against numpy oracles: encodings, loss, decoder-norm step, scale folding, I/O."""

import json

import numpy as np
import pytest
import safetensors.numpy
import torch

from saeflow.errors import SaeflowError
from saeflow.sae import CFG_FILE, WEIGHTS_FILE, BatchTopKSAE, batch_topk

D_IN, D_SAE, K = 16, 48, 5
CALLER_CFG = {"name": "default", "model": "org/m", "hook": "layer-3", "hook_spec": "hidden_states.3", "seed": 7}


def random_sae(seed=0, b_enc_shift=0.0, encoding="threshold", threshold=0.0):
    """An SAE with non-trivial biases; a negative b_enc_shift leaves some tokens < k active."""
    sae = BatchTopKSAE(D_IN, D_SAE, K, seed=seed, encoding=encoding)
    sae.threshold.fill_(threshold)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        sae.W_enc.add_(0.3 * torch.randn(D_IN, D_SAE, generator=gen))
        sae.b_enc.copy_(0.5 * torch.randn(D_SAE, generator=gen) + b_enc_shift)
        sae.b_dec.copy_(torch.randn(D_IN, generator=gen))
    return sae


def weights(sae):
    return {name: p.detach().numpy().astype(np.float64) for name, p in sae.named_parameters()}


def np_pre(w, x):
    return (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]


def np_relu_pre(w, x):
    return np.maximum(np_pre(w, x), 0)


def np_per_token_topk(acts, k):
    dense = np.zeros_like(acts)
    top = np.argsort(-acts, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(acts))[:, None]
    dense[rows, top] = acts[rows, top]
    return dense


def test_init_unit_decoder_rows_tied_encoder_and_seeded():
    sae = BatchTopKSAE(D_IN, D_SAE, K, seed=3)
    assert sae.W_enc.shape == (D_IN, D_SAE) and sae.W_dec.shape == (D_SAE, D_IN)
    assert all(p.dtype == torch.float32 for p in sae.parameters())
    np.testing.assert_allclose(sae.W_dec.norm(dim=1).detach().numpy(), 1, atol=1e-6)
    assert torch.equal(sae.W_enc, sae.W_dec.T) and not sae.b_enc.any() and not sae.b_dec.any()
    assert torch.equal(sae.W_dec, BatchTopKSAE(D_IN, D_SAE, K, seed=3).W_dec)
    assert not torch.equal(sae.W_dec, BatchTopKSAE(D_IN, D_SAE, K, seed=4).W_dec)


@pytest.mark.parametrize("k", [0, -1, D_SAE, D_SAE + 1])
def test_bad_k_raises_naming_k(k):
    with pytest.raises(SaeflowError, match="`k`"):
        BatchTopKSAE(D_IN, D_SAE, k)


def test_bad_d_sae_raises_naming_d_sae():
    with pytest.raises(SaeflowError, match="d_sae"):
        BatchTopKSAE(D_IN, 0, 1)


def test_topk_encoding_matches_numpy_per_token_topk():
    sae = random_sae(b_enc_shift=-3.0, encoding="topk")
    x = np.random.default_rng(0).normal(size=(200, D_IN)).astype(np.float32)
    feats = sae.encode(torch.from_numpy(x)).detach().numpy()
    expected = np_per_token_topk(np_relu_pre(weights(sae), x.astype(np.float64)), K)
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-5)
    counts = (feats > 0).sum(axis=1)
    assert counts.max() == K and counts.min() < K  # the shift did leave some tokens < k active


def test_threshold_encoding_matches_numpy_jumprelu():
    theta = 2.5
    sae = random_sae(threshold=theta)
    x = np.random.default_rng(0).normal(size=(300, D_IN)).astype(np.float32)
    feats = sae.encode(torch.from_numpy(x)).detach().numpy()
    pre = np_pre(weights(sae), x.astype(np.float64))
    expected = np.where(pre > theta, pre, 0)
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-5)
    counts = (expected > 0).sum(axis=1)
    assert counts.min() < K < counts.max()  # a variable number of latents per token, not k each
    recon = expected @ weights(sae)["W_dec"] + weights(sae)["b_dec"]
    np.testing.assert_allclose(sae(torch.from_numpy(x)).detach().numpy(), recon, rtol=1e-4, atol=1e-4)


def test_threshold_zero_is_relu():
    sae = random_sae()
    x = np.random.default_rng(5).normal(size=(20, D_IN)).astype(np.float32)
    expected = np_relu_pre(weights(sae), x.astype(np.float64))
    np.testing.assert_allclose(sae.encode(torch.from_numpy(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_unknown_encoding_is_refused():
    with pytest.raises(SaeflowError, match="encoding"):
        BatchTopKSAE(D_IN, D_SAE, K, encoding="per_token")


def test_batch_topk_keeps_exactly_k_times_batch_largest():
    sae = random_sae()
    x = np.random.default_rng(1).normal(size=(64, D_IN)).astype(np.float32)
    acts = np_relu_pre(weights(sae), x.astype(np.float64))
    kept = batch_topk(torch.from_numpy(acts.astype(np.float32)), K).numpy()
    assert len(kept) == K * 64 and (np.diff(kept) > 0).all()  # ascending flat indices, no repeats
    threshold = np.sort(acts, axis=None)[-K * 64]
    np.testing.assert_array_equal(kept, np.flatnonzero(acts >= threshold))
    # It really is a batch budget: some tokens get more than k latents.
    assert (np.bincount(kept // D_SAE, minlength=64) > K).any()


def test_batch_topk_is_exact_when_one_token_owns_more_than_its_candidates():
    acts = np.random.default_rng(3).uniform(0, 1, size=(64, D_SAE)).astype(np.float32)
    acts[0] *= 100  # token 0 dwarfs the rest: it owns more of the budget than its 4k candidates
    kept = batch_topk(torch.from_numpy(acts), K).numpy()
    threshold = np.sort(acts, axis=None)[-K * 64]
    np.testing.assert_array_equal(kept, np.flatnonzero(acts >= threshold))
    assert (kept < D_SAE).sum() > 4 * K  # token 0 got more than its candidates


def test_training_losses_match_numpy():
    sae = random_sae()
    x = np.random.default_rng(2).normal(size=(32, D_IN)).astype(np.float32)
    dead = np.zeros(D_SAE, dtype=bool)
    dead[::3] = True
    aux_k = 4
    out = sae.training_losses(torch.from_numpy(x), torch.from_numpy(dead), aux_k, aux_coeff=0.25)

    w, x64 = weights(sae), x.astype(np.float64)
    acts = np_relu_pre(w, x64)
    feats = np.where(acts >= np.sort(acts, axis=None)[-K * 32], acts, 0)
    recon = feats @ w["W_dec"] + w["b_dec"]
    mse = ((recon - x64) ** 2).sum(axis=1).mean()
    aux_feats = np_per_token_topk(acts * dead, aux_k)
    residual = x64 - recon
    # Normalised by the residual's variance (OpenAI's sparse_autoencoder, dictionary_learning).
    aux = (((aux_feats @ w["W_dec"] - residual) ** 2).sum(axis=1).mean()
           / ((residual - residual.mean(axis=0)) ** 2).sum(axis=1).mean())
    assert aux > 0
    assert out.min_kept.item() == pytest.approx(feats[feats > 0].min(), rel=1e-5)  # θ's sample
    np.testing.assert_allclose(out.recon_ND.detach().numpy(), recon, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(out.fired_F.numpy(), (feats > 0).any(axis=0))
    assert out.l0.item() == pytest.approx((feats > 0).sum() / 32)
    np.testing.assert_allclose([out.mse.item(), out.aux_loss.item(), out.loss.item()],
                               [mse, aux, mse + 0.25 * aux], rtol=1e-5)


def test_no_dead_latents_means_zero_aux_loss():
    sae = random_sae()
    x = torch.randn(8, D_IN, generator=torch.Generator().manual_seed(0))
    out = sae.training_losses(x, torch.zeros(D_SAE, dtype=torch.bool), 4, 1.0)
    assert out.aux_loss.item() == 0 and out.loss.item() == out.mse.item()


def test_remove_parallel_grad_then_normalize():
    sae = random_sae()
    x = torch.randn(32, D_IN, generator=torch.Generator().manual_seed(0))
    sae.training_losses(x, torch.ones(D_SAE, dtype=torch.bool), 4, 1.0).loss.backward()
    grad_before = sae.W_dec.grad.clone()
    sae.remove_decoder_parallel_grad_()
    w = sae.W_dec.detach().numpy().astype(np.float64)
    g = grad_before.numpy().astype(np.float64)
    expected = g - (g * w).sum(axis=1, keepdims=True) * w
    np.testing.assert_allclose(sae.W_dec.grad.numpy(), expected, rtol=1e-5, atol=1e-5)
    parallel = (sae.W_dec.grad * sae.W_dec).sum(dim=1).detach().numpy()
    np.testing.assert_allclose(parallel, 0, atol=1e-6 * np.abs(g).max())

    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.5, 3, D_SAE)[:, None])
    sae.normalize_decoder_()
    np.testing.assert_allclose(sae.W_dec.norm(dim=1).detach().numpy(), 1, atol=1e-6)
    np.testing.assert_allclose(sae.W_dec.detach().numpy(), w, atol=1e-6)  # direction unchanged


@pytest.mark.parametrize("encoding", ["threshold", "topk"])
def test_fold_input_scale_matches_scaled_encoding_divided_by_scale(encoding):
    scale, theta = 3.7, (0.6 if encoding == "threshold" else 0.0)
    sae = random_sae(b_enc_shift=-0.5, encoding=encoding, threshold=theta)
    w = weights(sae)  # the unfolded SAE, trained on x * scale, θ in scaled units
    x = np.random.default_rng(3).normal(size=(100, D_IN)).astype(np.float32) / scale
    pre_scaled = np_pre(w, x.astype(np.float64) * scale)
    if encoding == "threshold":
        feats_expected = np.where(pre_scaled > theta, pre_scaled, 0) / scale
    else:
        feats_expected = np_per_token_topk(np.maximum(pre_scaled, 0), K) / scale
    recon_expected = (feats_expected * scale @ w["W_dec"] + w["b_dec"]) / scale

    sae.fold_input_scale_(scale)
    assert sae.threshold[0].item() == pytest.approx(theta / scale)
    feats = sae.encode(torch.from_numpy(x)).detach().numpy()
    assert (feats > 0).any()
    np.testing.assert_allclose(feats, feats_expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sae(torch.from_numpy(x)).detach().numpy(), recon_expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sae.W_dec.detach().numpy(), w["W_dec"])  # rows still unit norm
    with pytest.raises(SaeflowError, match="scale"):
        sae.fold_input_scale_(0.0)


def test_save_load_round_trip(tmp_path):
    sae = random_sae(threshold=0.25)
    written = sae.save(tmp_path / "sae", CALLER_CFG)
    cfg = json.loads((tmp_path / "sae" / CFG_FILE).read_text())
    assert cfg == written
    assert {k: cfg[k] for k in CALLER_CFG} == CALLER_CFG
    assert (cfg["d_in"], cfg["d_sae"], cfg["k"], cfg["architecture"]) == (D_IN, D_SAE, K, "jumprelu")
    assert (cfg["trained_as"], cfg["encoding"]) == ("batchtopk", "threshold")

    # Readable without saeflow, with the contract's names, shapes and dtype.
    arrays = safetensors.numpy.load_file(tmp_path / "sae" / WEIGHTS_FILE)
    assert {name: (a.shape, a.dtype) for name, a in arrays.items()} == {
        "W_enc": ((D_IN, D_SAE), np.float32), "b_enc": ((D_SAE,), np.float32),
        "W_dec": ((D_SAE, D_IN), np.float32), "b_dec": ((D_IN,), np.float32), "threshold": ((D_SAE,), np.float32)}
    np.testing.assert_array_equal(arrays["W_enc"], sae.W_enc.detach().numpy())
    np.testing.assert_array_equal(arrays["threshold"], np.full(D_SAE, 0.25, np.float32))

    loaded, loaded_cfg = BatchTopKSAE.load(tmp_path / "sae")
    assert loaded_cfg == cfg and loaded.k == K and loaded.encoding == "threshold"
    for (name, p), (_, q) in zip(sae.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(p, q), name
    assert sorted(p.name for p in (tmp_path / "sae").iterdir()) == sorted([WEIGHTS_FILE, CFG_FILE])  # no temp files left


def test_save_requires_caller_keys(tmp_path):
    with pytest.raises(SaeflowError, match="hook_spec"):
        random_sae().save(tmp_path, {k: v for k, v in CALLER_CFG.items() if k != "hook_spec"})


def test_load_missing_file_and_shape_mismatch(tmp_path):
    with pytest.raises(SaeflowError, match=CFG_FILE):
        BatchTopKSAE.load(tmp_path)
    random_sae().save(tmp_path, CALLER_CFG)
    weights_bytes = (tmp_path / WEIGHTS_FILE).read_bytes()
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(SaeflowError, match=WEIGHTS_FILE):
        BatchTopKSAE.load(tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(weights_bytes)
    cfg = json.loads((tmp_path / CFG_FILE).read_text())
    (tmp_path / CFG_FILE).write_text(json.dumps({**cfg, "d_sae": D_SAE * 2}))
    with pytest.raises(SaeflowError, match="W_enc"):
        BatchTopKSAE.load(tmp_path)
