"""Output-token influence of each feature: extreme entries of W_dec @ W_U, by feature blocks.

Only a [block_size, vocab] slice of the product exists at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saeflow.analysis.topk import top_k_per_row


@dataclass(frozen=True)
class Influences:
    """Rows in (feature, sign, rank) order: the "+" list (largest first), then "-" (most negative first)."""

    feature: np.ndarray  # int64
    sign: np.ndarray  # "<U1": "+" or "-"
    rank: np.ndarray  # int64
    token_id: np.ndarray  # int64
    score: np.ndarray  # float32


def influences(W_dec_FD, W_U_DV, k: int, block_size: int = 1024) -> Influences:
    """Top k and bottom k of W_dec @ W_U per feature (ties: smaller token id), in float32.

    W_U may be a torch tensor on any device: each block is then multiplied there and brought
    back to the host for the selection. W_dec is numpy or anything torch.as_tensor accepts.
    """
    W_U_DV = W_U_DV.detach().float() if hasattr(W_U_DV, "detach") else np.asarray(W_U_DV, dtype=np.float32)
    blocks = [
        _block_rows(start, _block_product(W_dec_FD[start : start + block_size], W_U_DV), k)
        for start in range(0, W_dec_FD.shape[0], block_size)
    ]
    return Influences(*(np.concatenate(column) for column in zip(*blocks)))


def _block_product(W_dec_BD, W_U_DV) -> np.ndarray:
    if hasattr(W_U_DV, "detach"):
        import torch  # already loaded: the caller passed a tensor

        return (torch.as_tensor(W_dec_BD, dtype=torch.float32, device=W_U_DV.device) @ W_U_DV).cpu().numpy()
    return np.asarray(W_dec_BD, dtype=np.float32) @ W_U_DV


def _block_rows(start: int, scores_BV: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """The block's (feature, sign, rank, token_id, score) columns in (feature, sign, rank) order."""
    top = top_k_per_row(scores_BV, k)
    row, token_id, neg_score, rank = top_k_per_row(-scores_BV, k)
    bottom = (row, token_id, -neg_score, rank)
    sign = np.repeat(np.array(["+", "-"]), [top[0].size, row.size])
    row, token_id, score, rank = (np.concatenate(pair) for pair in zip(top, bottom))
    order = np.lexsort((rank, sign, row))  # "+" sorts before "-"
    return start + row[order], sign[order], rank[order], token_id[order], score[order]
