"""Ablation effects (sae_vis' "loss effect"): for a feature's top examples, the feature removed
from the hook's value at every position (the SAE's error term kept) and the model rerun from
there; per token of the example's window, the change in the loss of predicting it, and per
feature the next-token log-probabilities it moves most.

The rerun is the whole forward pass with the hook's value replaced: everything downstream of the
hook is what running from the hook gives. A sequence is cut after its window's last token, since
a causal model's earlier positions never see the later ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from saeflow import storage
from saeflow.hooks import replaced
from saeflow.interventions import feature_activations, recording, remove_feature

log = logging.getLogger(__name__)

EFFECT_SCHEMA = pa.schema([
    ("feature", pa.int64()), ("rank", pa.int32()), ("seq", pa.int32()), ("pos", pa.int32()), ("token", pa.string()),
    ("activation", pa.float32()), ("loss", pa.float32()), ("loss_effect", pa.float32()),
])
LOGIT_SCHEMA = pa.schema([
    ("feature", pa.int64()), ("sign", pa.string()), ("rank", pa.int32()), ("token_id", pa.int64()),
    ("token", pa.string()), ("effect", pa.float32()),
])


@dataclass(frozen=True)
class Example:
    """One top example to ablate: the feature, the example's rank, its sequence, and the window
    [lo, hi) of positions it shows."""

    feature: int
    rank: int
    seq: int
    lo: int
    hi: int


def ablated_features(top_examples_path, max_features: int, named: list[int]) -> list[int]:
    """The first `max_features` features (by id) that have top examples, plus the `named` ones
    (steered features) that have any; sorted."""
    table = storage.read_parquet_table(top_examples_path, ["feature", "rank"], filters=[("rank", "=", 0)])
    with_examples = np.unique(table["feature"].to_numpy())
    chosen = set(with_examples[:max_features].tolist()) | (set(named) & set(with_examples.tolist()))
    return sorted(int(f) for f in chosen)


def examples_to_ablate(top_examples_path, tokens_path, features: list[int], n_examples: int,
                       context: int) -> tuple[list[Example], dict[int, dict]]:
    """The first `n_examples` top examples of each feature, with top_examples' window rule
    (pos - context .. pos + context, clipped to the sequence), and the token rows of their
    sequences (seq -> {"token_id", "token"}, in pos order); both tables read with filters, so
    only those rows are kept."""
    if not features:
        return [], {}
    table = storage.read_parquet_table(top_examples_path, ["feature", "rank", "seq", "pos"],
                                       filters=[("feature", "in", features), ("rank", "<", n_examples)])
    table = table.sort_by([("feature", "ascending"), ("rank", "ascending")])
    sequences = _sequence_rows(tokens_path, sorted(set(table["seq"].to_pylist())))
    examples = [Example(f, r, s, max(0, p - context), min(len(sequences[s]["token_id"]), p + context + 1))
                for f, r, s, p in zip(*(table[c].to_pylist() for c in ("feature", "rank", "seq", "pos")))]
    return examples, sequences


def _sequence_rows(tokens_path, seqs: list[int]) -> dict[int, dict]:
    rows = storage.read_parquet_table(tokens_path, ["seq", "pos", "token_id", "token"], filters=[("seq", "in", seqs)])
    rows = rows.sort_by([("seq", "ascending"), ("pos", "ascending")])
    seq = rows["seq"].to_numpy()
    token_id, token = rows["token_id"].to_numpy(), rows["token"].to_pylist()
    bounds = np.flatnonzero(np.diff(seq)) + 1
    out = {}
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(seq)]):
        out[int(seq[lo])] = {"token_id": token_id[lo:hi].astype(np.int64), "token": token[lo:hi]}
    return out


class _LogitEffects:
    """Per feature, the summed (clean - ablated) log-probabilities over its active positions."""

    def __init__(self):
        self.sums: dict[int, torch.Tensor] = {}
        self.counts: dict[int, int] = {}

    def add(self, feature: int, change_TV: torch.Tensor) -> None:
        total = change_TV.double().sum(0)
        self.sums[feature] = self.sums.get(feature, 0) + total
        self.counts[feature] = self.counts.get(feature, 0) + len(change_TV)

    def table(self, top: int, decode) -> pa.Table:
        rows = []
        for feature in sorted(self.sums):
            if self.counts[feature] == 0:
                continue
            mean = (self.sums[feature] / self.counts[feature]).float()
            for sign, order in (("+", mean.topk(top)), ("-", (-mean).topk(top))):
                for rank, token_id in enumerate(order.indices.tolist()):
                    rows.append({"feature": feature, "sign": sign, "rank": rank, "token_id": token_id,
                                 "token": decode(token_id), "effect": float(mean[token_id])})
        return pa.Table.from_pylist(rows, schema=LOGIT_SCHEMA)


def ablation_effects(sae, lm, hook_spec, examples: list[Example], sequences: dict[int, dict], decode,
                     top_logits: int = 10, batch_size: int = 8, progress=None) -> tuple[pa.Table, pa.Table]:
    """(ablation.parquet, ablation_logits.parquet) of the examples; see the module docstring."""
    device = next(lm.parameters()).device
    effects, logit_effects = [], _LogitEffects()
    by_length = sorted(examples, key=lambda e: e.hi)  # batches of similar length: little padding
    for first in range(0, len(by_length), batch_size):
        batch = by_length[first : first + batch_size]
        length = max(e.hi for e in batch)
        ids = torch.zeros((len(batch), length), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, example in enumerate(batch):
            ids[row, : example.hi] = torch.from_numpy(sequences[example.seq]["token_id"][: example.hi])
            mask[row, : example.hi] = 1
        ids, mask = ids.to(device), mask.to(device)
        features = [e.feature for e in batch]
        recorded: list = []
        with torch.inference_mode():
            with recording(lm, hook_spec, recorded):
                clean = _LogProbs(lm(input_ids=ids, attention_mask=mask).logits)
            active = feature_activations(sae, recorded[0], features).float()
            with replaced(lm, hook_spec, remove_feature(sae, features)):
                ablated = _LogProbs(lm(input_ids=ids, attention_mask=mask).logits)
            # Loss of predicting each next token: [B, T - 1].
            loss_clean, loss_ablated = (-lp.of_next(ids).cpu() for lp in (clean, ablated))
            for row, example in enumerate(batch):
                effects += _window_rows(example, sequences[example.seq]["token"], active[row].cpu(),
                                        loss_clean[row], loss_ablated[row])
                on = torch.nonzero(active[row, : example.hi] > 0).squeeze(-1)
                logit_effects.add(example.feature, clean.at(row, on) - ablated.at(row, on))
        if progress is not None:
            progress.update(len(batch))
    log.info("ablated %d examples of %d features", len(examples), len({e.feature for e in examples}))
    effects.sort(key=lambda row: (row["feature"], row["rank"], row["pos"]))
    return pa.Table.from_pylist(effects, schema=EFFECT_SCHEMA), logit_effects.table(top_logits, decode)


class _LogProbs:
    """Log-probabilities of [B, T, V] logits, normalised only where asked: a full log_softmax of
    a batch is as large as the logits again."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits
        self.log_norm = logits.float().logsumexp(-1)  # [B, T]

    def of_next(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, T - 1]: position t's log-probability of token t + 1."""
        picked = self.logits[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1).float()
        return picked - self.log_norm[:, :-1]

    def at(self, row: int, positions: torch.Tensor) -> torch.Tensor:
        """[len(positions), V] for one row."""
        return self.logits[row, positions].float() - self.log_norm[row, positions, None]


def _window_rows(example: Example, tokens: list[str], active, loss_clean, loss_ablated) -> list[dict]:
    """One row per position of the window: the loss of predicting its token (from the position
    before) clean, and its change with the feature removed; null at position 0."""
    rows = []
    for pos in range(example.lo, example.hi):
        loss = effect = None
        if pos > 0:
            loss = float(loss_clean[pos - 1])
            effect = float(loss_ablated[pos - 1]) - loss
        rows.append({"feature": example.feature, "rank": example.rank, "seq": example.seq, "pos": pos,
                     "token": tokens[pos], "activation": float(active[pos]), "loss": loss, "loss_effect": effect})
    return rows


def ablation_job(sae_dir, model_path, tokenizer_path, analysis: dict, tokens_path, effects_path, logits_path,
                 settings: dict, context: int, experiments: list[dict], device: str = "cpu",
                 dtype: str = "float32", adapter=None) -> None:
    """analysis/ablation.parquet and ablation_logits.parquet of the saved SAE. `analysis`: paths of
    its top_examples, feature_stats and labels tables; `settings`: the config's `ablation:`; the
    features the SAE's steering `experiments` name are always ablated."""
    from saeflow.jobs import progress
    from saeflow.model import load_model, load_tokenizer
    from saeflow.sae import BatchTopKSAE
    from saeflow.steering import experiment_features

    sae, cfg = BatchTopKSAE.load(sae_dir)
    top_examples_path = analysis["top_examples"]
    steered = [f for experiment in experiments
               for f in experiment_features(experiment, sae.d_sae, analysis["feature_stats"], analysis["labels"])]
    features = ablated_features(top_examples_path, settings["max_features"], steered)
    examples, sequences = examples_to_ablate(top_examples_path, tokens_path, features, settings["examples"], context)
    lm = load_model(model_path, device, dtype, adapter=adapter)
    sae = sae.to(next(lm.parameters()).device)
    tokenizer = load_tokenizer(tokenizer_path)
    log.info("%s: ablating %d features over %d top examples at %s", cfg["name"], len(features), len(examples),
             cfg["hook_spec"])
    with progress(len(examples), "examples", "ex") as bar:
        effects, logits = ablation_effects(sae, lm, cfg["hook_spec"], examples, sequences,
                                           lambda token_id: tokenizer.decode([token_id]),
                                           settings["top_logits"], settings["batch_size"], bar)
    storage.write_table(effects_path, effects)
    storage.write_table(logits_path, logits)
