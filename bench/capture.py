"""Benchmark the activation-capture code against a bare forward pass of the same model.

Both sides run the same length-sorted batches of the same sequences; the capture side also
reads the token rows, casts, checks for non-finite values and writes the compressed Zarr chunk.
Prints tokens/s of each, the overhead ratio (goal <= 1.15) and bytes stored per token against
float32 dense. Usage: python bench/capture.py [--tokens 16384] [--layer 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from _rss import best_of
from saeflow.activations import capture_chunk, length_sorted_batches, padded_batch
from saeflow.chunks import plan_chunks, read_token_rows, sequence_lengths
from saeflow.corpus import iter_documents
from saeflow.model import default_model_path, load_model, load_tokenizer
from saeflow.sequences import tokenize_corpus


def bare_forward(model, token_ids, seq_starts, lengths, layer, batch_size):
    """The baseline: the model's forward on the same batches, outputs discarded."""
    with torch.inference_mode():
        for batch in length_sorted_batches(lengths, batch_size):
            ids, mask = padded_batch(token_ids, seq_starts, lengths, batch)
            model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[layer]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--layer", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model_dir = default_model_path()
    work = Path(tempfile.mkdtemp(prefix="saeflow-bench-"))
    tokens = work / "tokens.parquet"
    tokenize_corpus(iter_documents([]), load_tokenizer(model_dir), 128, tokens,
                    work / "documents.parquet", work / "idf.parquet", max_tokens=args.tokens)
    chunk = plan_chunks(sequence_lengths(tokens), args.tokens)[0]
    rows = read_token_rows(tokens, chunk.token_start, chunk.token_stop, ["seq", "token_id"])
    seq_starts = np.flatnonzero(np.diff(rows["seq"], prepend=-1))
    lengths = np.diff(np.append(seq_starts, len(rows["seq"])))
    token_ids = rows["token_id"].astype(np.int64)
    model = load_model(model_dir)

    bare_forward(model, token_ids, seq_starts, lengths, args.layer, args.batch_size)  # warm-up
    bare = best_of(args.repeats, lambda: bare_forward(model, token_ids, seq_starts, lengths, args.layer, args.batch_size))
    results = {}
    for dtype in ("float16", "float32"):
        out = work / f"chunk-{dtype}.zarr"
        seconds = best_of(args.repeats, lambda: capture_chunk(model, str(model_dir), tokens, chunk, args.layer, out,
                                                              batch_size=args.batch_size, dtype=dtype))
        stored = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        results[dtype] = (seconds, stored / chunk.n_tokens)

    dense = model.config.hidden_size * 4
    print(f"model all-MiniLM-L6-v2 (d_model {model.config.hidden_size}), layer {args.layer}, "
          f"{chunk.n_tokens} tokens in {len(lengths)} sequences, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'what':<22}{'seconds':>9}{'tokens/s':>11}{'vs bare':>9}{'bytes/token':>13}{'vs f32 dense':>14}")
    print(f"{'bare forward':<22}{bare:>9.2f}{chunk.n_tokens / bare:>11.0f}{1:>9.2f}{'-':>13}{'-':>14}")
    for dtype, (seconds, per_token) in results.items():
        print(f"{'capture ' + dtype:<22}{seconds:>9.2f}{chunk.n_tokens / seconds:>11.0f}{seconds / bare:>9.2f}"
              f"{per_token:>13.0f}{per_token / dense:>14.2f}")


if __name__ == "__main__":
    main()
