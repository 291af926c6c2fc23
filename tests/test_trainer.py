"""The trainer: recovering a planted dictionary, the decoder-norm step, the schedule, scaling,
and bit-identical resume from a checkpoint."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from saeflow.errors import SaeflowError
from saeflow.sae import BatchTopKSAE
from saeflow.trainer import (
    CHECKPOINT_JSON,
    TrainConfig,
    geometric_median,
    lr_at,
    train_sae,
    training_step,
    unit_mean_squared_norm_scale,
)

D_IN, N_TRUE, ACTIVE = 32, 64, 4


def planted_dictionary(seed=0):
    """N_TRUE random unit directions in D_IN dimensions (the ground truth an SAE should find)."""
    dirs = np.random.default_rng(seed).normal(size=(N_TRUE, D_IN))
    return dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def planted_batch(dictionary, rng, n, offset=3.0):
    """x = sparse positive coefficients @ dictionary + an offset vector + small noise."""
    coeffs = np.zeros((n, N_TRUE))
    rows = np.arange(n)[:, None]
    active = np.argsort(rng.random((n, N_TRUE)), axis=1)[:, :ACTIVE]
    coeffs[rows, active] = rng.uniform(1.0, 3.0, size=(n, ACTIVE))
    noise = 0.02 * rng.normal(size=(n, D_IN))
    return (coeffs @ dictionary + offset + noise).astype(np.float32)


def planted_source(dictionary, batch_size, raw_scale=10.0):
    """A deterministic stream: batch s depends only on (s), so any start step replays it.
    raw_scale makes the raw activations far from unit norm, exercising input scaling."""
    def source(start_step):
        step = start_step
        while True:
            yield raw_scale * planted_batch(dictionary, np.random.default_rng([12345, step]), batch_size)
            step += 1
    return source


def recovered_fraction(sae, dictionary, threshold=0.9):
    dec = sae.W_dec.detach().numpy().astype(np.float64)
    return float(((dictionary @ dec.T).max(axis=1) >= threshold).mean())


def test_recovers_planted_dictionary():
    dictionary = planted_dictionary()
    # A strong AuxK (dead after 20 batches, coefficient 1/4) revives latents fast enough for
    # a short run: every seed tried recovers 100% of the directions in 1200 steps.
    cfg = TrainConfig(k=ACTIVE, d_sae=128, total_tokens=1200 * 256, batch_size=256, lr=1e-2,
                      dead_tokens=256 * 20, aux_coeff=1 / 4, log_every=100, checkpoint_every=10**9)
    source = planted_source(dictionary, cfg.batch_size)
    sample = next(source(10**6))
    sae, rows = train_sae(source, D_IN, cfg, init_sample=sample,
                          input_scale=unit_mean_squared_norm_scale(sample))
    assert recovered_fraction(sae, dictionary) >= 0.95, rows[-1]
    # 64 directions in 32 dimensions interfere, so a linear encoder leaves fvu near 0.08.
    assert rows[-1]["fvu"] < 0.15 and rows[-1]["fvu"] < rows[0]["fvu"] / 2
    # The returned SAE works on raw activations: reconstructs them with its learned threshold,
    # about k latents per token on average, though not exactly k each.
    x = torch.from_numpy(next(source(2 * 10**6)))
    fvu = ((sae(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()
    assert fvu < 0.15
    l0 = (sae.encode(x) > 0).sum(dim=1).float()
    assert 0.7 * ACTIVE < l0.mean() < 1.3 * ACTIVE and l0.std() > 0
    np.testing.assert_allclose(sae.W_dec.norm(dim=1).detach().numpy(), 1, atol=1e-5)


def test_log_rows_and_threshold_average(monkeypatch):
    dictionary = planted_dictionary()
    cfg = TrainConfig(k=ACTIVE, d_sae=64, total_tokens=23 * 100, batch_size=100, lr=1e-3, warmup_fraction=0.2,
                      dead_tokens=300, log_every=5, checkpoint_every=10**9, threshold_window=10 / 23)
    source = planted_source(dictionary, cfg.batch_size)
    seen, min_kept = [], []
    losses = BatchTopKSAE.training_losses

    def recording(self, *args):
        out = losses(self, *args)
        min_kept.append(out.min_kept.item())
        return out

    monkeypatch.setattr(BatchTopKSAE, "training_losses", recording)
    scale = 0.1
    sae, rows = train_sae(source, D_IN, cfg, init_sample=next(source(0)), input_scale=scale,
                          progress=lambda step, total, row: seen.append((step, total, row)))
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 23]  # and the last step
    assert [r["tokens_seen"] for r in rows] == [500, 1000, 1500, 2000, 2300]
    assert set(rows[0]) == {"step", "tokens_seen", "loss", "mse", "aux_loss", "fvu", "l0", "dead_fraction",
                            "threshold"}
    assert all(0 <= r["dead_fraction"] <= 1 and r["fvu"] > 0 for r in rows)

    # θ: the plain mean of the batches' smallest kept activation from the end of warm-up (step 5)
    # until `threshold_window` batches, then an exponential average with weight 1/window.
    theta, expected = 0.0, {}
    for n, value in enumerate(min_kept[5:], start=1):
        theta += (value - theta) / min(n, 10)
        expected[5 + n] = theta / scale  # logged in raw units
    assert rows[0]["threshold"] == 0.0  # step 5: warm-up just ended, nothing averaged yet
    assert [r["threshold"] for r in rows[1:]] == pytest.approx([expected[r["step"]] for r in rows[1:]], rel=1e-12)
    np.testing.assert_allclose(sae.threshold.numpy(), expected[23], rtol=1e-6)
    assert all(r["loss"] == pytest.approx(r["mse"] + cfg.aux_coeff * r["aux_loss"], rel=1e-5) for r in rows)
    assert [s for s, _, _ in seen] == list(range(1, 24)) and {t for _, t, _ in seen} == {23}
    assert [row for _, _, row in seen if row is not None] == rows


def test_decoder_rows_unit_norm_after_every_step():
    sae = BatchTopKSAE(D_IN, 64, 4, seed=0)
    optimizer = torch.optim.Adam(sae.parameters(), lr=0.05)  # large, so drift would show
    rng = np.random.default_rng(0)
    dictionary = planted_dictionary()
    for _ in range(10):
        x = torch.from_numpy(planted_batch(dictionary, rng, 128))
        training_step(sae, optimizer, x, torch.ones(64, dtype=torch.bool), aux_k=8, aux_coeff=1 / 32,
                      max_grad_norm=None)
        np.testing.assert_allclose(sae.W_dec.norm(dim=1).detach().numpy(), 1, atol=1e-5)


def test_gradient_norm_is_clipped():
    """With plain SGD at lr 1, a clipped step moves the encoder and biases by at most the clip norm."""
    x = torch.from_numpy(planted_batch(planted_dictionary(), np.random.default_rng(0), 128))
    moved = {}
    for clip in (None, 1e-3):
        sae = BatchTopKSAE(D_IN, 64, 4, seed=0)
        before = [p.detach().clone() for p in (sae.W_enc, sae.b_enc, sae.b_dec)]
        training_step(sae, torch.optim.SGD(sae.parameters(), lr=1.0), x, torch.zeros(64, dtype=torch.bool),
                      aux_k=8, aux_coeff=0.0, max_grad_norm=clip)
        after = (sae.W_enc, sae.b_enc, sae.b_dec)
        moved[clip] = float(torch.sqrt(sum(((a.detach() - b) ** 2).sum() for a, b in zip(after, before))))
    assert moved[None] > 1e-2  # unclipped, the gradient is far larger than the clip norm
    assert 0 < moved[1e-3] <= 1e-3 * (1 + 1e-5)


def test_lr_schedule_warms_up_holds_and_decays_to_zero():
    cfg = TrainConfig(k=4, d_sae=64, total_tokens=100, batch_size=1, lr=1.0,
                      warmup_fraction=0.1, decay_fraction=0.2)
    lrs = [lr_at(step, cfg) for step in range(100)]
    np.testing.assert_allclose(lrs[:10], np.arange(1, 11) / 10)
    assert lrs[10:80] == [1.0] * 70
    np.testing.assert_allclose(lrs[80:], np.arange(20, 0, -1) / 20)


def test_default_lr_and_aux_k():
    cfg = TrainConfig(k=4, d_sae=2**14 * 4, total_tokens=4096)
    assert cfg.resolved_lr() == pytest.approx(1e-4)
    assert cfg.resolved_aux_k(768) == 384
    assert dataclasses.replace(cfg, d_sae=100).resolved_aux_k(768) == 100


def test_bad_settings_raise_naming_the_key():
    with pytest.raises(SaeflowError, match="b_dec_init"):
        TrainConfig(k=4, d_sae=64, total_tokens=4096, b_dec_init="median")
    with pytest.raises(SaeflowError, match="total_tokens"):
        TrainConfig(k=4, d_sae=64, total_tokens=10, batch_size=4096)
    with pytest.raises(SaeflowError, match="`k`"):
        train_sae(lambda s: iter([]), D_IN, TrainConfig(k=64, d_sae=64, total_tokens=10, batch_size=10),
                  init_sample=np.ones((2, D_IN), np.float32), input_scale=1.0)


def test_running_out_of_batches_raises():
    cfg = TrainConfig(k=4, d_sae=64, total_tokens=50, batch_size=10, log_every=1)
    batches = [np.ones((10, D_IN), np.float32)] * 3
    with pytest.raises(SaeflowError, match="total_tokens"):
        train_sae(lambda start: iter(batches[start:]), D_IN, cfg, init_sample=batches[0], input_scale=1.0)


def test_unit_mean_squared_norm_scale():
    x = np.random.default_rng(0).normal(5, 3, size=(500, D_IN)).astype(np.float32)
    scale = unit_mean_squared_norm_scale(x)
    assert np.mean(np.sum((x.astype(np.float64) * scale) ** 2, axis=1)) == pytest.approx(1)
    with pytest.raises(SaeflowError):
        unit_mean_squared_norm_scale(np.zeros((3, D_IN), np.float32))


def test_geometric_median_minimises_summed_distance():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(size=(200, 5)), 1000 + rng.normal(size=(5, 5))])  # outliers
    median = geometric_median(points)

    def cost(y):
        return np.linalg.norm(points - y, axis=1).sum()

    assert cost(median) < cost(points.mean(axis=0))
    for _ in range(20):  # no nearby point does better
        assert cost(median) <= cost(median + 1e-3 * rng.normal(size=5)) + 1e-9
    assert np.linalg.norm(median) < 1  # the outliers do not drag it


def small_cfg(**changes):
    # dead after 2 batches: latents die and revive throughout, so the dead counters matter.
    base = TrainConfig(k=ACTIVE, d_sae=96, total_tokens=40 * 64, batch_size=64, lr=2e-3,
                       dead_tokens=64 * 2, log_every=5, checkpoint_every=7, seed=3)
    return dataclasses.replace(base, **changes)


def run(cfg, **kwargs):
    source = planted_source(planted_dictionary(), cfg.batch_size)
    sample = next(source(0))
    return train_sae(source, D_IN, cfg, init_sample=sample, input_scale=unit_mean_squared_norm_scale(sample), **kwargs)


def assert_same(first, second):
    (sae_a, rows_a), (sae_b, rows_b) = first, second
    for (name, a), (_, b) in zip(sae_a.state_dict().items(), sae_b.state_dict().items()):
        assert torch.equal(a, b), name
    assert rows_a == rows_b


def test_resume_is_bit_identical(tmp_path):
    cfg = small_cfg()
    uninterrupted = run(cfg)
    assert_same(uninterrupted, run(cfg))  # same seed, same result

    _, rows = run(cfg, checkpoint_dir=tmp_path, stop_after_steps=17)  # killed 3 steps after a checkpoint
    assert rows[-1]["step"] == 15
    meta = json.loads((tmp_path / CHECKPOINT_JSON).read_text())
    assert meta["step"] == 14 and meta["tokens_seen"] == 14 * 64  # the resumed run redoes steps 15..17
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT_JSON, meta["tensors"]])
    resumed = run(cfg, checkpoint_dir=tmp_path)
    assert_same(uninterrupted, resumed)
    assert json.loads((tmp_path / CHECKPOINT_JSON).read_text())["step"] == cfg.total_steps


def test_checkpoint_with_other_settings_is_not_resumed(tmp_path):
    run(small_cfg(), checkpoint_dir=tmp_path, stop_after_steps=10)
    other = small_cfg(lr=1e-3)
    assert_same(run(other), run(other, checkpoint_dir=tmp_path))
