"""Benchmark the intervention jobs on the default run's model and SAE.

(a) Steering: one prompt's unsteered run and every alpha generated as ONE batch (what the steer
job does) against one generation per alpha plus one unsteered (the obvious loop).
(b) Ablation: the features' top examples in length-sorted batches with log-probabilities
normalised only where read (what the ablation job does) against one example at a time with a
full log_softmax of the logits.
Usage (after a default run): python bench/interventions.py [--results results] [--feature 1422]
       [--alphas 1 2 4] [--tokens 20] [--features 4] [--examples 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from _rss import best_of
from saeflow.ablation import ablated_features, ablation_effects, examples_to_ablate
from saeflow.generation import greedy_continuations
from saeflow.hooks import replaced
from saeflow.interventions import add_direction, by_rows, recording, remove_feature
from saeflow.model import load_model, load_tokenizer, special_token_wrapping
from saeflow.sae import BatchTopKSAE

PROMPT = "In Python, a list"


def steering_sides(lm, sae, hook, prompt_ids, feature, scale, alphas, tokens):
    direction = sae.W_dec[feature].detach()

    def batched():
        edit = by_rows([(slice(1, 1 + len(alphas)), add_direction(direction, [a * scale for a in alphas]))])
        with replaced(lm, hook, edit):
            greedy_continuations(lm, prompt_ids, 1 + len(alphas), tokens, set())

    def one_by_one():
        greedy_continuations(lm, prompt_ids, 1, tokens, set())
        for alpha in alphas:
            with replaced(lm, hook, add_direction(direction, [alpha * scale])):
                greedy_continuations(lm, prompt_ids, 1, tokens, set())

    return batched, one_by_one


def naive_ablation(lm, sae, hook, examples, sequences):
    """Each example alone, clean and ablated, with a full log_softmax each."""
    with torch.inference_mode():
        for example in examples:
            ids = torch.from_numpy(sequences[example.seq]["token_id"][: example.hi])[None]
            recorded: list = []
            with recording(lm, hook, recorded):
                lm(input_ids=ids).logits.float().log_softmax(-1)
            with replaced(lm, hook, remove_feature(sae, [example.feature])):
                lm(input_ids=ids).logits.float().log_softmax(-1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--sae", default="default")
    parser.add_argument("--feature", type=int, default=1422)
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--features", type=int, default=3)
    parser.add_argument("--examples", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = Path(args.results)
    sae_dir = results / "saes" / args.sae
    sae, cfg = BatchTopKSAE.load(sae_dir)
    lm, tokenizer = load_model(results / "model"), load_tokenizer(results / "tokenizer")
    hook = cfg["hook_spec"]
    prefix, _ = special_token_wrapping(tokenizer, prepend_bos=True)
    prompt_ids = prefix + tokenizer(PROMPT, add_special_tokens=False)["input_ids"]

    rows = []
    batched, one_by_one = steering_sides(lm, sae, hook, prompt_ids, args.feature, 40.0, args.alphas, args.tokens)
    fast, slow = best_of(args.repeats, batched), best_of(args.repeats, one_by_one)
    rows.append((f"steering: 1 prompt, {len(args.alphas)} alphas + unsteered, {args.tokens} tokens", fast, slow))

    top = sae_dir / "analysis/top_examples.parquet"
    features = ablated_features(top, args.features, [args.feature])
    examples, sequences = examples_to_ablate(top, results / "corpus/tokens.parquet", features, args.examples, 10)
    fast = best_of(args.repeats, lambda: ablation_effects(sae, lm, hook, examples, sequences, str))
    slow = best_of(args.repeats, lambda: naive_ablation(lm, sae, hook, examples, sequences))
    n_tokens = sum(e.hi for e in examples)
    rows.append((f"ablation: {len(examples)} examples of {len(features)} features, {n_tokens} tokens", fast, slow))

    print(f"{'job':<62} {'saeflow s':>10} {'naive s':>9} {'ratio':>6}")
    for name, fast, slow in rows:
        print(f"{name:<62} {fast:>10.2f} {slow:>9.2f} {fast / slow:>6.2f}")
    print(f"(model {cfg['model']}, hook {hook}, {args.threads} threads, best of {args.repeats}; "
          f"{time.strftime('%Y-%m-%d')})")


if __name__ == "__main__":
    main()
