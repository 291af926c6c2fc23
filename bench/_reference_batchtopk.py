"""A plain BatchTopK trainer, written for bench/sae.py from the paper (Bussmann et al. 2024) and
dictionary_learning's BatchTopKTrainer recipe, as the reference saeflow's trainer is measured
against on the same rows: dense encoder and decoder with full autograd, Adam with the same
schedule and learning rate, the decoder-norm step, AuxK normalised by the residual's variance,
no gradient clipping, and θ the mean over the batches after warm-up of the smallest activation
each batch kept. It trains on scaled inputs and returns raw-unit weights, as saeflow does."""

from __future__ import annotations

import math

import numpy as np
import torch


def train_reference(batches, d_in: int, d_sae: int, k: int, steps: int, lr: float, input_scale: float,
                    b_dec_init: np.ndarray, dead_tokens: int, seed: int = 0, progress=None) -> dict[str, np.ndarray]:
    """`batches`: an iterator of raw float32 [B, d_in] arrays; progress() is called after each
    step. Returns W_enc, b_enc, W_dec, b_dec, threshold (numpy, raw units)."""
    gen = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(d_sae, d_in, generator=gen)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_enc = W_dec.T.clone().requires_grad_()
    W_dec.requires_grad_()
    b_enc = torch.zeros(d_sae, requires_grad=True)
    b_dec = torch.tensor(b_dec_init * input_scale, dtype=torch.float32, requires_grad=True)
    optimizer = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=lr)
    warmup, decay = max(1, round(0.05 * steps)), round(0.2 * steps)
    since_fired = torch.zeros(d_sae, dtype=torch.int64)
    theta_sum, theta_n = 0.0, 0
    for step in range(steps):
        x = torch.from_numpy(next(batches)) * input_scale
        scale_lr = (step + 1) / warmup if step < warmup else ((steps - step) / decay if step >= steps - decay else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr * scale_lr
        acts = ((x - b_dec) @ W_enc + b_enc).relu()
        flat = acts.flatten()
        top = flat.topk(k * len(x), sorted=False)
        feats = torch.zeros_like(flat).scatter(0, top.indices, top.values).view_as(acts)
        recon = feats @ W_dec + b_dec
        residual = x - recon
        loss = residual.pow(2).sum(-1).mean()
        dead = since_fired >= dead_tokens
        if dead.any():
            aux_top = (acts * dead).topk(min(d_in // 2, int(dead.sum())), dim=-1)
            aux = torch.zeros_like(acts).scatter(-1, aux_top.indices, aux_top.values) @ W_dec
            target = residual.detach()
            loss = loss + (aux - target).pow(2).sum(-1).mean() / (target - target.mean(0)).pow(2).sum(-1).mean() / 32
        optimizer.zero_grad()
        loss.backward()
        with torch.no_grad():
            W_dec.grad -= (W_dec.grad * W_dec).sum(1, keepdim=True) * W_dec
        optimizer.step()
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=1, keepdim=True)
            fired = (feats > 0).any(0)
            since_fired.add_(len(x)).masked_fill_(fired, 0)
            if step >= warmup:
                kept = top.values[top.values > 0]
                theta_sum += float(kept.min()) if len(kept) else 0.0
                theta_n += 1
        if progress is not None:
            progress()
    theta = theta_sum / max(theta_n, 1)
    raw = {"W_enc": W_enc, "b_enc": b_enc / input_scale, "W_dec": W_dec, "b_dec": b_dec / input_scale}
    out = {name: t.detach().numpy().astype(np.float32) for name, t in raw.items()}
    out["threshold"] = np.full(d_sae, theta / input_scale, dtype=np.float32)
    assert math.isfinite(theta)
    return out
