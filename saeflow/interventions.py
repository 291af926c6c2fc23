"""Edits of a hook's value inside a forward pass, per row of a batch: add a direction, clamp one
SAE feature, remove features; and recording the value as the model computes it.

Each edit is a function value [B, T, d] -> value, for `saeflow.hooks.replaced`. They work on
the value the model computes (the SAE's error term is never dropped): clamping or removing a
feature changes the value only along that feature's decoder row, by exactly the change in the
feature's activation, which is what decode(edited features) + (value - decode(features)) is.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

from saeflow.hooks import replaced


def _per_row(coefficients, value: torch.Tensor) -> torch.Tensor:
    """[B] coefficients as a float32 [B, 1, 1] tensor on the value's device."""
    return torch.as_tensor(coefficients, dtype=torch.float32, device=value.device).reshape(-1, 1, 1)


@torch.no_grad()
def feature_activations(sae, value: torch.Tensor, features) -> torch.Tensor:
    """[B, T]: row b's activation of feature `features[b]` at each position, under the SAE's
    inference encoding (the whole encoding runs: under top-k a feature's activation depends on
    the others)."""
    batch, tokens, d = value.shape
    flat = value.reshape(-1, d).to(sae.W_enc.device, torch.float32)
    encoded = sae.encode(flat).reshape(batch, tokens, -1)
    index = torch.as_tensor(features, device=encoded.device).reshape(-1, 1, 1).expand(batch, tokens, 1)
    return encoded.gather(-1, index).squeeze(-1).to(value.device)


def add_direction(direction: torch.Tensor, coefficients) -> Callable:
    """value + coefficients[b] * direction at every position of row b."""

    def edit(value):
        step = _per_row(coefficients, value) * direction.to(value.device, torch.float32)
        return (value.float() + step).to(value.dtype)

    return edit


def set_feature(sae, features, targets) -> Callable:
    """Row b's feature `features[b]` set to `targets[b]` at every position, everything else kept:
    value + (target - activation) * W_dec[feature]. Target 0 removes the feature (ablation);
    target equal to the activation (an inactive feature set to 0) leaves the value unchanged."""

    @torch.no_grad()
    def edit(value):
        active = feature_activations(sae, value, features)
        rows = sae.W_dec[torch.as_tensor(features, device=sae.W_dec.device)].to(value.device, torch.float32)
        change = _per_row(targets, value).squeeze(-1) - active  # [B, T]
        return (value.float() + change.unsqueeze(-1) * rows.unsqueeze(1)).to(value.dtype)

    return edit


def remove_feature(sae, features) -> Callable:
    """Row b's feature `features[b]` removed from the value at every position (error term kept)."""
    return set_feature(sae, features, [0.0] * len(features))


def by_rows(edits: list[tuple[slice, Callable]]) -> Callable:
    """Each edit applied to its slice of the batch's rows; rows no slice covers stay as they are
    (so one batch can hold the unedited run beside several edited ones)."""

    def edit(value):
        out = value.clone()
        for rows, row_edit in edits:
            out[rows] = row_edit(value[rows])
        return out

    return edit


@contextlib.contextmanager
def recording(model, spec, into: list):
    """Within the block, every value the hook takes is appended to `into`, unchanged."""

    def keep(value):
        into.append(value.detach())
        return value

    with replaced(model, spec, keep):
        yield

