"""BatchTopKSAE against numpy oracles: encodings, loss, decoder-norm step, scale folding, I/O."""

import json

import numpy as np
import pytest
import safetensors.numpy
import torch

from saeflow.errors import SaeflowError
from saeflow.sae import CFG_FILE, WEIGHTS_FILE, BatchTopKSAE, batch_topk

D_IN, D_SAE, K = 16, 48, 5
CALLER_CFG = {"name": "default", "model": "/models/m", "layer": 3, "seed": 7, "hook_name": "hidden_states.3"}


def random_sae(seed=0, b_enc_shift=0.0):
    """An SAE with non-trivial biases; a negative b_enc_shift leaves some tokens < k active."""
    sae = BatchTopKSAE(D_IN, D_SAE, K, seed=seed)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        sae.W_enc.add_(0.3 * torch.randn(D_IN, D_SAE, generator=gen))
        sae.b_enc.copy_(0.5 * torch.randn(D_SAE, generator=gen) + b_enc_shift)
        sae.b_dec.copy_(torch.randn(D_IN, generator=gen))
    return sae


def weights(sae):
    return {name: p.detach().numpy().astype(np.float64) for name, p in sae.named_parameters()}


def np_relu_pre(w, x):
    return np.maximum((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 0)


def np_per_token_topk(acts, k):
    dense = np.zeros_like(acts)
    top = np.argsort(-acts, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(acts))[:, None]
    dense[rows, top] = acts[rows, top]
    return dense


def to_dense(values, indices, d_sae):
    dense = np.zeros((len(values), d_sae))
    for row, (vals, idx) in enumerate(zip(values, indices)):
        for v, i in zip(vals, idx):
            dense[row, i] += v
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


def test_per_token_encoding_matches_numpy_topk_with_padding():
    sae = random_sae(b_enc_shift=-3.0)
    x = np.random.default_rng(0).normal(size=(200, D_IN)).astype(np.float32)
    values, indices = (t.detach().numpy() for t in sae.encode_per_token(torch.from_numpy(x)))
    assert values.shape == indices.shape == (200, K)
    expected = np_per_token_topk(np_relu_pre(weights(sae), x.astype(np.float64)), K)
    np.testing.assert_allclose(to_dense(values, indices, D_SAE), expected, rtol=1e-5, atol=1e-5)
    assert (values == 0).any() and (values > 0).any()  # the shift did leave some tokens < k active
    assert ((indices >= 0) & (indices < D_SAE)).all()  # padding too: scatterable as is
    assert all(len(set(row)) == K for row in indices)
    assert ((values != 0).sum(axis=1) <= K).all()
    assert (np.diff(values, axis=1) <= 0).all()  # strongest first
    np.testing.assert_allclose(sae.encode_dense(torch.from_numpy(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_batch_topk_keeps_exactly_k_times_batch_largest():
    sae = random_sae()
    x = np.random.default_rng(1).normal(size=(64, D_IN)).astype(np.float32)
    dense = sae.encode_batch_topk(torch.from_numpy(x)).detach().numpy()
    assert np.count_nonzero(dense) == K * 64
    acts = np_relu_pre(weights(sae), x.astype(np.float64))
    threshold = np.sort(acts, axis=None)[-K * 64]
    np.testing.assert_allclose(dense, np.where(acts >= threshold, acts, 0), rtol=1e-5, atol=1e-5)
    # It really is a batch budget: some tokens get more than k latents.
    assert (np.count_nonzero(dense, axis=1) > K).any()


def test_batch_topk_is_exact_when_one_token_owns_more_than_its_candidates():
    acts = np.random.default_rng(3).uniform(0, 1, size=(64, D_SAE)).astype(np.float32)
    acts[0] *= 100  # token 0 dwarfs the rest: it owns more of the budget than its 4k candidates
    dense = batch_topk(torch.from_numpy(acts), K).numpy()
    threshold = np.sort(acts, axis=None)[-K * 64]
    np.testing.assert_array_equal(dense, np.where(acts >= threshold, acts, 0))
    assert np.count_nonzero(dense) == K * 64 and np.count_nonzero(dense[0]) > 4 * K


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
    aux = ((aux_feats @ w["W_dec"] - (x64 - recon)) ** 2).sum(axis=1).mean()
    assert aux > 0
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


def test_fold_input_scale_matches_scaled_encoding_divided_by_scale():
    scale = 3.7
    sae = random_sae(b_enc_shift=-0.5)
    w = weights(sae)  # the unfolded SAE, trained on x * scale
    x = np.random.default_rng(3).normal(size=(100, D_IN)).astype(np.float32) / scale
    feats_expected = np_per_token_topk(np_relu_pre(w, x.astype(np.float64) * scale), K) / scale
    recon_expected = (feats_expected * scale @ w["W_dec"] + w["b_dec"]) / scale

    sae.fold_input_scale_(scale)
    feats = sae.encode_dense(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(feats, feats_expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sae(torch.from_numpy(x)).detach().numpy(), recon_expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sae.W_dec.detach().numpy(), w["W_dec"])  # rows still unit norm
    with pytest.raises(SaeflowError, match="scale"):
        sae.fold_input_scale_(0.0)


def test_save_load_round_trip(tmp_path):
    sae = random_sae()
    written = sae.save(tmp_path / "sae", CALLER_CFG)
    cfg = json.loads((tmp_path / "sae" / CFG_FILE).read_text())
    assert cfg == written
    assert {k: cfg[k] for k in CALLER_CFG} == CALLER_CFG
    assert (cfg["d_in"], cfg["d_sae"], cfg["k"], cfg["architecture"]) == (D_IN, D_SAE, K, "batchtopk")
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg["dtype"] == "float32"

    # Readable without saeflow, with the contract's names, shapes and dtype.
    arrays = safetensors.numpy.load_file(tmp_path / "sae" / WEIGHTS_FILE)
    assert {name: (a.shape, a.dtype) for name, a in arrays.items()} == {
        "W_enc": ((D_IN, D_SAE), np.float32), "b_enc": ((D_SAE,), np.float32),
        "W_dec": ((D_SAE, D_IN), np.float32), "b_dec": ((D_IN,), np.float32)}
    np.testing.assert_array_equal(arrays["W_enc"], sae.W_enc.detach().numpy())

    loaded, loaded_cfg = BatchTopKSAE.load(tmp_path / "sae")
    assert loaded_cfg == cfg and loaded.k == K
    for (name, p), (_, q) in zip(sae.named_parameters(), loaded.named_parameters()):
        assert torch.equal(p, q), name
    assert sorted(p.name for p in (tmp_path / "sae").iterdir()) == sorted([WEIGHTS_FILE, CFG_FILE])  # no temp files left


def test_save_requires_caller_keys(tmp_path):
    with pytest.raises(SaeflowError, match="hook_name"):
        random_sae().save(tmp_path, {k: v for k, v in CALLER_CFG.items() if k != "hook_name"})


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
