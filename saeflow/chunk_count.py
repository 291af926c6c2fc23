"""How many chunks a run has, and their ids: fixed while the workflow plans, before anything is
tokenised, so a dry run lists every per-chunk job (imports nothing heavy: planning runs it)."""

from __future__ import annotations

import math

from saeflow.errors import SaeflowError


def chunk_id(index: int) -> str:
    """`chunk-` and the index padded to 4 digits (chunk-10000 follows chunk-9999)."""
    return f"chunk-{index:04d}"


# Corpus bytes per token, to fix the number of chunks while the workflow plans, before anything
# is tokenised (measured: the built-in corpus is 466 KB and 113k SmolLM2 tokens, 4.1 bytes each).
BYTES_PER_TOKEN = 4


def planned_chunk_count(corpus_bytes: int, tokens_per_chunk: int, max_tokens: int | None) -> int:
    """How many chunks the corpus is cut into: its estimated tokens over `tokens_per_chunk`, and
    at least two, so the last chunk can be held out of training."""
    if tokens_per_chunk < 1:
        raise SaeflowError("activations.tokens_per_chunk: must be at least 1")
    tokens = corpus_bytes / BYTES_PER_TOKEN
    if max_tokens is not None:
        tokens = min(tokens, max_tokens)
    return max(2, math.ceil(tokens / tokens_per_chunk))
