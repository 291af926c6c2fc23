"""Benchmark hook capture: early stop against a full forward, and one pass for several hooks
against one pass per hook.

(a) capturing `--hook` (the library's forward_hooks: run only as far as the hook, copy rows to
host memory) against the full forward with output_hidden_states=True and the same layer copied
out, as capture ran before; (b) the `--sweep` hooks captured in one pass against one pass each.
All sides run the same length-sorted batches of the same sequences of the built-in corpus.
Usage: python bench/capture.py [--model results/model] [--tokenizer results/tokenizer] [--hook hidden_states.15]
       [--sweep hidden_states.5 hidden_states.10 hidden_states.15] [--tokens 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from _rss import best_of
from saeflow.activations import forward_hooks, length_sorted_batches, padded_batch
from saeflow.chunks import sequence_bounds
from saeflow.corpus import iter_documents
from saeflow.hooks import parse_hook_spec
from saeflow.model import load_model, load_tokenizer, pick_device
from saeflow.sequences import tokenize_corpus
from saeflow.storage import read_parquet_columns


def full_forward(model, token_ids, seq_starts, lengths, layer, batch_size):
    """The baseline: every block and the head run, then hidden_states[layer] is copied out."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        for batch in length_sorted_batches(lengths, batch_size):
            ids, mask = padded_batch(token_ids, seq_starts, lengths, batch)
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
            out.hidden_states[layer].float().cpu()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="results/model", help="a Hugging Face model directory")
    parser.add_argument("--tokenizer", default="results/tokenizer",
                        help="its tokenizer's directory (the model directory itself, for one that has it)")
    parser.add_argument("--hook", default="hidden_states.15", help="a hidden_states.<L> hook")
    parser.add_argument("--sweep", nargs="+", default=["hidden_states.5", "hidden_states.10", "hidden_states.15"])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--context-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise SystemExit(f"{model_dir}: not a Hugging Face model directory; run the workflow first or pass --model")
    (site,) = parse_hook_spec(args.hook, "--hook")
    if site.kind != "hidden_states":
        raise SystemExit("--hook: give a hidden_states.<L> hook, so the full forward can report the same values")
    work = Path(tempfile.mkdtemp(prefix="saeflow-bench-"))
    tokens = work / "tokens.parquet"
    tokenize_corpus(iter_documents([]), load_tokenizer(args.tokenizer), args.context_len, tokens,
                    work / "documents.parquet", work / "idf.parquet", max_tokens=args.tokens)
    rows = read_parquet_columns(tokens, ["seq", "token_id"])
    seq_starts, lengths = sequence_bounds(rows["seq"])
    token_ids = rows["token_id"].astype(np.int64)
    n_tokens = len(token_ids)
    model = load_model(model_dir, pick_device(args.device), args.dtype)

    def capture(hooks: dict):
        return lambda: forward_hooks(model, hooks, token_ids, seq_starts, lengths, args.batch_size, "float32")

    sweep = {spec: spec for spec in args.sweep}
    runs = {
        "full forward, all hidden_states": lambda: full_forward(model, token_ids, seq_starts, lengths, site.target,
                                                                args.batch_size),
        f"capture {args.hook}": capture({args.hook: args.hook}),
        f"sweep, {len(sweep)} passes": lambda: [capture({name: spec})() for name, spec in sweep.items()],
        "sweep, 1 pass": capture(sweep),
    }
    seconds = {}
    for what, run in runs.items():
        run()  # warm-up
        seconds[what] = best_of(args.repeats, run)

    config = model.config.get_text_config()
    print(f"model {model_dir} ({config.num_hidden_layers} layers, d_model {config.hidden_size}), {n_tokens} tokens "
          f"in {len(lengths)} sequences, batch {args.batch_size}, {next(model.parameters()).device} {args.dtype}, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'what':<36}{'seconds':>9}{'tokens/s':>11}{'ratio':>8}")
    names = list(runs)
    for what, reference in zip(names, [names[0], names[0], names[2], names[2]]):
        ratio = seconds[what] / seconds[reference]
        print(f"{what:<36}{seconds[what]:>9.3f}{n_tokens / seconds[what]:>11.0f}{ratio:>8.2f}")
    print(f"ratio: seconds against '{names[0]}' for the capture, against '{names[2]}' for the one-pass sweep")


if __name__ == "__main__":
    main()
