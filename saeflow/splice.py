"""Replace one layer's hidden states inside a Hugging Face model's forward pass.

`hidden_states[L]` is the input of block L for L < n_layers, and the input of the output head
(after the final norm) for L = n_layers, so a pre-hook on that module swaps it for anything we
like (the SAE's reconstruction, zeros) while everything downstream runs unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

from saeflow.errors import SaeflowError


def transformer_blocks(model, n_layers: int) -> torch.nn.ModuleList:
    """The model's list of blocks: the first ModuleList with one entry per layer."""
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return module
    raise SaeflowError(f"cannot find the {n_layers} transformer blocks of {type(model).__name__}")


@contextlib.contextmanager
def replaced_hidden_states(model, layer: int, n_layers: int, replace: Callable[[torch.Tensor], torch.Tensor]):
    """Within the block, the model computes with `replace(hidden_states[layer])` in its place."""
    if layer < n_layers:
        target = transformer_blocks(model, n_layers)[layer]
    else:
        target = model.get_output_embeddings()

    def hook(module, args, kwargs):
        if args:
            return (replace(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": replace(kwargs["hidden_states"])}

    handle = target.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
