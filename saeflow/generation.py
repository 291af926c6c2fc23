"""Greedy generation with a KV cache, and scoring continuations under a model.

Both run whatever edit the caller has hooked into the model (`saeflow.hooks.replaced`): with an
edit that differs per row, the rows of one prompt give one continuation per steering strength.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saeflow.interventions import recording


def _device(model) -> torch.device:
    return next(model.parameters()).device


def greedy_continuations(lm, prompt_ids: list[int], n_rows: int, max_new_tokens: int,
                         stop_ids: set[int]) -> list[list[int]]:
    """`n_rows` greedy continuations of one prompt, each cut before its first stop token.

    The rows share the prompt, so they need no padding; they differ only through an edit that
    treats rows differently. Argmax is deterministic, so the same model and edit give the same
    text on the same device."""
    device = _device(lm)
    step_ids = torch.tensor([prompt_ids] * n_rows, dtype=torch.long, device=device)
    stops = torch.tensor(sorted(stop_ids), dtype=torch.long, device=device)
    stopped = torch.zeros(n_rows, dtype=torch.bool, device=device)
    steps, cache = [], None
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            out = lm(input_ids=step_ids, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            chosen = out.logits[:, -1].argmax(-1)
            steps.append(chosen)
            stopped |= torch.isin(chosen, stops)
            if bool(stopped.all()):
                break
            step_ids = chosen[:, None]
    generated = torch.stack(steps, dim=1).cpu().numpy() if steps else np.zeros((n_rows, 0), np.int64)
    return [_until_stop(row, stop_ids) for row in generated]


def _until_stop(row: np.ndarray, stop_ids: set[int]) -> list[int]:
    out = []
    for token in row.tolist():
        if token in stop_ids:
            break
        out.append(token)
    return out


@dataclass
class Scored:
    """A continuation under a model: its mean next-token CE (None when empty) and the hook's
    value at its tokens [n_tokens, d]."""

    ce: float | None
    values: torch.Tensor


def score_continuations(lm, hook_spec, prompt_ids: list[int], continuations: list[list[int]]) -> list[Scored]:
    """Each prompt + continuation run once through `lm` (right-padded in one batch: a causal
    model's real positions never see the padding): the mean CE of predicting the continuation's
    tokens, and the hook's value at them."""
    device = _device(lm)
    n_prompt = len(prompt_ids)
    length = n_prompt + max(len(c) for c in continuations)
    ids = torch.zeros((len(continuations), length), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, continuation in enumerate(continuations):
        tokens = prompt_ids + continuation
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    recorded: list = []
    with torch.inference_mode(), recording(lm, hook_spec, recorded):
        logits = lm(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
    values = recorded[0]
    log_probs = logits.log_softmax(-1)
    scored = []
    for row, continuation in enumerate(continuations):
        n = len(continuation)
        if n == 0:
            scored.append(Scored(None, values[row, :0].float()))
            continue
        targets = ids[row, n_prompt : n_prompt + n].to(device)
        picked = log_probs[row, n_prompt - 1 : n_prompt - 1 + n].gather(-1, targets[:, None])
        scored.append(Scored(-float(picked.mean()), values[row, n_prompt : n_prompt + n].float()))
    return scored
