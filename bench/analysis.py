"""Benchmark the analysis stage on a synthetic store, against a naive per-feature loop measured in the same run.

The store is drawn directly, no SAE: chunks of 32,768 tokens in the contract's CSR format
(a variable number of feature ids per token, 32 ± 15 as a threshold SAE gives, from Zipf-like
densities, so some features are dense, a tail is rare and a few are dead), a corpus index
(sequences of 128 tokens, documents of about 8 sequences, token ids with Zipf frequencies, their
idf, labels on some documents so that detection runs), random unit decoder rows W_dec [F, 384]
and a random W_U [384, 30522].

Each analysis runs as the workflow's jobs do, each job in a fresh child process so that its peak
RSS is its own (VmHWM): transpose_store; one analyse_shard job per feature shard (4, as
analysis.feature_shards; the job loads the corpus index and writes its Parquet pieces);
influence_table, cosine_table and coactivation_table per shard; units (select_units, filter_chunk
over every chunk, thresholds_table). A row's seconds are the sum of its jobs, run one after the
other; its peak is the largest of its jobs' peaks. "all" is every row: sum of seconds, largest peak.
"cpu s" is the jobs' CPU time (all threads), which a busy machine inflates far less than wall time;
the last line also estimates the wall time with two jobs at a time (snakemake --cores 2): the jobs'
CPU seconds scheduled greedily on two workers, each job after the ones it needs.

The baseline is the 'before' code (bench/_naive_analysis.py): a Python loop over features, each
scanning its column of a dense [tokens, features] float32 matrix (stats, histogram, percentiles, per-sequence maxima with
np.maximum.reduceat, a Python sort for the top sequences, band samples, contexts as Python lists,
TF-IDF labels with a Counter, detection with pairwise AUROC), W_dec[f] @ W_U and W_dec @ W_dec[f]
with a full argsort for influences and cosine neighbours, and the rows of a dense [tokens, F]
activity matrix summed per feature for co-activation. A dense 1M x 16384 matrix is 64 GB, so it
runs on the first --naive-tokens tokens (and half of them) and --naive-features features
(stratified by density rank), and is extrapolated: the line through the two token sizes to
--tokens, times features / naive features. Everything in the baseline's favour: its dense float
matrix holds only the sampled columns (a full-width one reads a column several times slower),
and building the dense matrices, writing outputs, the transpose and the units have no naive
counterpart and count as zero. Its outputs for the sampled features are checked against the
library's tables (stats, top examples and co-activation only where it saw every token).

Usage: python bench/analysis.py [--tokens 1000000] [--features 16384|24576] [--quick (100k x 4096, best of 2)]
       [--only transpose,shards,influence,cosine,coactivation,units] [--repeats 1]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from _naive_analysis import (NaiveCorpus, naive_coactivation, naive_cosine, naive_feature_tables,
                             naive_influence)
from _rss import run_in_child
from _synthetic_store import L0, L0_SPREAD, draw_csr, token_l0s
from saeflow import storage
from saeflow.decoder_tables import coactivation_table, cosine_table, influence_table
from saeflow.feature_shard import AnalysisParams, analyse_shard, load_corpus_index, shard_range
from saeflow.feature_store import transpose_store
from saeflow.splits import assign_splits
from saeflow.storage import read_sparse_chunk
from saeflow.units import UnitCriteria, filter_chunk, select_units, thresholds_table, write_unit_map

CHUNK_TOKENS = 32768  # activations.tokens_per_chunk
SEQ_LEN = 128  # model.context_len
D_MODEL, VOCAB = 384, 30522  # all-MiniLM-L6-v2's width and vocabulary
ZIPF_EXPONENT = 0.8  # feature densities by rank: at 16384 features the densest fires on ~2/3 of tokens
RARE_FRACTION, DEAD_FRACTION = 0.08, 0.02  # the lowest-ranked features: a handful of activations, none
N_LABELS, LABELLED_DOCS = 16, 0.5  # document labels: this many names, on this share of documents
N_SHARDS, INFLUENCE_K, NEIGHBOURS = 4, 10, 10  # analysis.feature_shards, influence_k, neighbours
PARAMS = AnalysisParams()  # the config's defaults: top_k 20, context 10, bins 50, percentiles 50/90/99


@dataclass(frozen=True)
class Store:
    """Paths of the synthetic run under one temporary folder."""

    root: Path
    n_chunks: int

    @property
    def chunks(self) -> list[Path]:
        return [self.root / "features" / f"chunk-{i:04d}.zarr" for i in range(self.n_chunks)]

    tokens = property(lambda self: self.root / "tokens.parquet")
    idf = property(lambda self: self.root / "idf.parquet")
    documents = property(lambda self: self.root / "documents.parquet")
    by_feature = property(lambda self: self.root / "by_feature.zarr")
    W_dec = property(lambda self: self.root / "W_dec.npy")
    W_U = property(lambda self: self.root / "W_U.npy")
    pieces = property(lambda self: self.root / "pieces")  # each shard job's tables
    units = property(lambda self: self.root / "units")

    def piece(self, table: str, shard: int) -> Path:
        return self.pieces / f"{table}-{shard}.parquet"


# ---------------------------------------------------------------- the synthetic run


def feature_weights(rng, n_features) -> np.ndarray:
    """Draw probability of each feature id: Zipf over ranks, a rare tail and dead ones, ranks shuffled
    over ids (a trained SAE's dense features are spread over the id range, and shards are id ranges)."""
    rank = np.arange(n_features)
    weights = 1 / (rank + 1.0) ** ZIPF_EXPONENT
    weights[rank >= n_features * (1 - RARE_FRACTION - DEAD_FRACTION)] *= 1e-2
    weights[rank >= n_features * (1 - DEAD_FRACTION)] = 0
    return rng.permutation(weights / weights.sum())


def write_store(store: Store, n_tokens, n_features, seed=0) -> np.ndarray:
    """The CSR chunks (as encode_chunk writes them); returns the entries per feature."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(feature_weights(rng, n_features))
    scale = rng.lognormal(0.0, 0.5, n_features).astype(np.float32)  # features differ in their range
    counts = np.zeros(n_features, np.int64)
    for chunk, path in enumerate(store.chunks):
        start = chunk * CHUNK_TOKENS
        n = min(CHUNK_TOKENS, n_tokens - start)
        row_counts, ids = draw_csr(rng, cdf, token_l0s(rng, n))
        values = (rng.exponential(size=len(ids)) * scale[ids] + 1e-3).astype(np.float32)
        counts += np.bincount(ids, minlength=n_features)
        with storage.CsrChunkWriter(path, n, n_features, start, "float32") as out:
            out.append(row_counts, ids, values)
    return counts


def write_corpus(store: Store, n_tokens, seed=1) -> dict:
    """tokens.parquet (seq, pos, doc, token_id), idf.parquet and documents.parquet with labels."""
    rng = np.random.default_rng(seed)
    n_seqs = -(-n_tokens // SEQ_LEN)
    token_seq = (np.arange(n_tokens) // SEQ_LEN).astype(np.int32)
    seqs_per_doc = rng.integers(4, 13, size=n_seqs)  # about 8
    doc_of_seq = np.repeat(np.arange(n_seqs), seqs_per_doc)[:n_seqs].astype(np.int32)
    n_docs = int(doc_of_seq[-1]) + 1
    token_doc = doc_of_seq[token_seq]
    vocab_cdf = np.cumsum(1 / np.arange(1, VOCAB + 1))
    token_id = rng.permutation(VOCAB).astype(np.int32)[
        np.searchsorted(vocab_cdf, rng.random(n_tokens) * vocab_cdf[-1], side="right").clip(max=VOCAB - 1)]
    pos = (np.arange(n_tokens) % SEQ_LEN).astype(np.int32)
    special = pos == 0  # a BOS per sequence
    start = np.where(special, -1, 4 * pos).astype(np.int32)  # character spans: only their order matters here
    storage.write_parquet(store.tokens, {
        "seq": token_seq, "pos": pos, "doc": token_doc, "token_id": token_id, "special": special,
        "start": start, "end": np.where(special, -1, start + 3).astype(np.int32),
    }, pa.schema([("seq", pa.int32()), ("pos", pa.int32()), ("doc", pa.int32()), ("token_id", pa.int32()),
                  ("special", pa.bool_()), ("start", pa.int32()), ("end", pa.int32())]))

    pairs = np.unique(token_doc.astype(np.int64) * VOCAB + token_id)
    df = np.bincount(pairs % VOCAB, minlength=VOCAB)
    seen = np.flatnonzero(df).astype(np.int32)
    storage.write_parquet(store.idf, {
        "token_id": seen, "token": token_strings()[seen], "df": df[seen], "idf": np.log(n_docs / df[seen]),
    }, pa.schema([("token_id", pa.int32()), ("token", pa.string()), ("df", pa.int64()), ("idf", pa.float64())]))

    names = [f"concept{i:02d}" for i in range(N_LABELS)]
    labels = [sorted(rng.choice(names, rng.integers(1, 4), replace=False).tolist())
              if rng.random() < LABELLED_DOCS else [] for _ in range(n_docs)]
    calibration = assign_splits([tuple(doc_labels) for doc_labels in labels], 0.5, seed)
    storage.write_parquet(store.documents, {
        "doc": np.arange(n_docs, dtype=np.int32), "source": [f"synthetic:{d}" for d in range(n_docs)],
        "n_tokens": np.bincount(token_doc, minlength=n_docs).astype(np.int32), "labels": labels,
        "split": np.where(calibration, "calibration", "test"),
    }, pa.schema([("doc", pa.int32()), ("source", pa.string()), ("n_tokens", pa.int32()),
                  ("labels", pa.list_(pa.string())), ("split", pa.string())]))
    return {"seqs": n_seqs, "docs": n_docs, "labelled": sum(bool(x) for x in labels)}


def token_strings() -> np.ndarray:
    """The string of every token id (the stand-in for the tokenizer's decode)."""
    return np.array([f" t{i}" for i in range(VOCAB)], dtype=object)


def write_weights(store: Store, n_features, seed=2) -> None:
    rng = np.random.default_rng(seed)
    W_dec = rng.standard_normal((n_features, D_MODEL)).astype(np.float32)
    np.save(store.W_dec, W_dec / np.linalg.norm(W_dec, axis=1, keepdims=True))
    np.save(store.W_U, (rng.standard_normal((D_MODEL, VOCAB)) / np.sqrt(D_MODEL)).astype(np.float32))


# ---------------------------------------------------------------- the jobs (each in its own child)


def job_transpose(store: Store, n_features):
    transpose_store(store.chunks, store.by_feature, n_features)


def job_shard(store: Store, n_features, shard):
    features = shard_range(n_features, N_SHARDS, shard)
    corpus = load_corpus_index(store.tokens, store.idf, store.documents)
    for name, table in analyse_shard(store.by_feature, features, corpus, PARAMS).items():
        storage.write_table(store.piece(name, shard), table)


def job_influence(store: Store, n_features, shard):
    strings = token_strings()
    table = influence_table(np.load(store.W_dec), np.load(store.W_U), shard_range(n_features, N_SHARDS, shard),
                            INFLUENCE_K, lambda ids: strings[np.asarray(ids)])
    storage.write_table(store.piece("influences", shard), table)


def job_cosine(store: Store, n_features, shard):
    table = cosine_table(np.load(store.W_dec), shard_range(n_features, N_SHARDS, shard), NEIGHBOURS)
    storage.write_table(store.piece("neighbours_cosine", shard), table)


def job_coactivation(store: Store, n_features, shard):
    indptr = storage.read_zarr_array(storage.open_zarr_group(store.by_feature), "indptr")
    table = coactivation_table(store.chunks, shard_range(n_features, N_SHARDS, shard), n_features,
                               np.diff(indptr), NEIGHBOURS)
    storage.write_table(store.piece("neighbours_coactivation", shard), table)


def job_units(store: Store, n_features):
    """unit_map, then filter_units on every chunk, then thresholds: the units stage's jobs in a row."""
    stats = pa.concat_tables([pq.read_table(store.piece("calibration_stats", s)) for s in range(N_SHARDS)])
    columns = {name: stats.column(name).to_numpy(zero_copy_only=False) for name in
               ("feature", "n_active", "density", "max", "mean", "sum")}
    criteria = UnitCriteria()
    kept = select_units(columns, criteria)
    write_unit_map(store.units / "unit_map.json", kept, n_features, criteria)
    for path in store.chunks:
        filter_chunk(path, kept, store.units / "filtered" / path.name)
    percentiles = pa.concat_tables([pq.read_table(store.piece("percentiles", s)) for s in range(N_SHARDS)])
    storage.write_table(store.units / "thresholds.parquet", thresholds_table(percentiles, kept))


# Each analysis: its job function, and whether it runs once per feature shard.
JOBS = {"transpose": (job_transpose, False), "shards": (job_shard, True), "influence": (job_influence, True),
        "cosine": (job_cosine, True), "coactivation": (job_coactivation, True), "units": (job_units, False)}


# ---------------------------------------------------------------- the naive baseline


def naive_corpus(store: Store, n) -> NaiveCorpus:
    tokens = pq.read_table(store.tokens, columns=["seq", "doc", "token_id"]).slice(0, n)
    seq, doc = tokens.column("seq").to_numpy(), tokens.column("doc").to_numpy()
    seq_starts = np.flatnonzero(np.diff(seq, prepend=-1))
    doc_starts = np.flatnonzero(np.diff(doc, prepend=-1))
    idf_table = pq.read_table(store.idf)
    idf = np.zeros(VOCAB)
    idf[idf_table.column("token_id").to_numpy()] = idf_table.column("idf").to_numpy()
    labels = pq.read_table(store.documents).column("labels").to_pylist()[: len(doc_starts)]
    names = sorted({name for doc_labels in labels for name in doc_labels})
    masks = np.array([[name in doc_labels for doc_labels in labels] for name in names], dtype=bool)
    return NaiveCorpus(seq_starts, np.append(seq_starts[1:], n), doc_starts,
                       tokens.column("token_id").to_numpy(), token_strings().tolist(), idf, masks)


def dense_prefix(store: Store, n_tokens, n_features, sample) -> tuple[np.ndarray, np.ndarray]:
    """The first n_tokens rows as a dense float32 matrix of the sampled columns, and as a dense
    [n_tokens, n_features] bool activity matrix."""
    dense = np.zeros((n_tokens, len(sample)), np.float32)
    active = np.zeros((n_tokens, n_features), bool)
    column = np.full(n_features, -1)
    column[sample] = np.arange(len(sample))
    for path in store.chunks:
        chunk = read_sparse_chunk(path)
        if chunk.token_start >= n_tokens:
            break
        entries = slice(0, chunk.indptr[min(n_tokens - chunk.token_start, chunk.n_tokens)])
        token = chunk.token_start + chunk.entry_rows()[entries]
        feature, values = chunk.indices[entries], chunk.values[entries]
        active[token, feature] = True
        picked = column[feature] >= 0
        dense[token[picked], column[feature[picked]]] = values[picked]
    return dense, active


def job_naive(store: Store, n_features, sample, token_sizes, repeats):
    """Best-of-repeats seconds of each naive part over the sampled features, at each token size;
    and the outputs at the largest size, for checking against the library."""
    sizes = sorted(token_sizes)
    dense, active = dense_prefix(store, sizes[-1], n_features, sample)
    W_dec, W_U = np.load(store.W_dec), np.load(store.W_U)
    norms = np.linalg.norm(W_dec, axis=1)
    strings = token_strings().tolist()
    seconds = {"shards": {}, "coactivation": {}}
    outputs = {}
    for n in sizes:
        corpus = naive_corpus(store, n)
        n_active = active[:n].sum(axis=0)
        for part in ("shards", "coactivation"):
            best = np.inf
            for _ in range(repeats):
                rng = np.random.default_rng(PARAMS.seed)
                start = time.perf_counter()
                for j, f in enumerate(sample):
                    col = dense[:n, j]
                    if part == "shards":
                        result = naive_feature_tables(col, f, corpus, PARAMS, rng)
                    else:
                        result = naive_coactivation(active[:n], col, f, n_active, NEIGHBOURS)
                    if n == sizes[-1]:
                        outputs.setdefault(int(f), {})[part] = result
                best = min(best, time.perf_counter() - start)
            seconds[part][n] = best
    for part, fn in (("influence", lambda f: naive_influence(W_dec, W_U, f, strings, INFLUENCE_K)),
                     ("cosine", lambda f: naive_cosine(W_dec, norms, f, NEIGHBOURS))):
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            for f in sample:
                outputs[int(f)][part] = fn(f)
            best = min(best, time.perf_counter() - start)
        seconds[part] = best
    return seconds, outputs


def extrapolate(measured: dict, n_tokens) -> float:
    """Seconds at n_tokens on the line through the two measured token sizes (never below the larger)."""
    (n1, t1), (n2, t2) = sorted(measured.items())
    slope = max(0.0, (t2 - t1) / (n2 - n1)) if n2 > n1 else t2 / n2
    return t2 + slope * (n_tokens - n2)


def check_naive(store: Store, outputs: dict, ran: set, saw_all_tokens: bool) -> list[str]:
    """Where the naive outputs disagree with the library's tables for the sampled features."""
    def rows(table, shards=range(N_SHARDS)):
        return pa.concat_tables([pq.read_table(store.piece(table, s)) for s in shards]).to_pylist()

    problems = []
    features = set(outputs)
    if "shards" in ran and saw_all_tokens:
        stats = {r["feature"]: r for r in rows("feature_stats") if r["feature"] in features}
        tops = {}
        for r in rows("top_examples"):
            if r["feature"] in features:
                tops.setdefault(r["feature"], []).append(r["seq"])
        for f, out in outputs.items():
            naive = out["shards"]
            if (stats[f]["n_active"], stats[f]["max"]) != (naive["n_active"], naive.get("max")):
                problems.append(f"feature {f}: stats differ")
            if tops.get(f, []) != [example["seq"] for example in naive.get("top", [])]:
                problems.append(f"feature {f}: top examples differ")
    if "coactivation" in ran and saw_all_tokens:
        found = {}
        for r in rows("neighbours_coactivation"):
            if r["feature"] in features:
                found.setdefault(r["feature"], []).append((r["other"], r["score"]))
        problems += [f"feature {f}: co-activation neighbours differ" for f, out in outputs.items()
                     if found.get(f, []) != out["coactivation"]]
    if "influence" in ran:
        found = {}
        for r in rows("influences"):
            if r["feature"] in features:
                found.setdefault((r["feature"], r["sign"]), []).append(r["score"])
        problems += [f"feature {f}: influences differ" for f, out in outputs.items() for sign in "+-"
                     if not np.allclose(found[f, sign], [score for _, _, score in out["influence"][sign]],
                                        rtol=1e-4, atol=1e-5)]
    if "cosine" in ran:
        found = {}
        for r in rows("neighbours_cosine"):
            if r["feature"] in features:
                found.setdefault(r["feature"], []).append(r["score"])
        problems += [f"feature {f}: cosine neighbours differ" for f, out in outputs.items()
                     if not np.allclose(found[f], [s for _, s in out["cosine"]], rtol=1e-4, atol=1e-6)]
    return problems


# ---------------------------------------------------------------- main

ANALYSES = tuple(JOBS)


def cpu_timed(fn, args) -> float:
    """Run fn(*args); return the CPU seconds it took (all threads), which other processes on a busy
    machine do not inflate the way they inflate wall time."""
    start = time.process_time()
    fn(*args)
    return time.process_time() - start


def measure(fn, args, repeats):
    """(best seconds, best CPU seconds, worst peak RSS, RSS before the call) over repeats, each in a
    fresh child."""
    cpu, seconds, before, peak = zip(*(run_in_child(cpu_timed, fn, args) for _ in range(repeats)))
    return min(seconds), min(cpu), max(peak), min(before)


def two_job_estimate(cpu: dict[str, list[float]]) -> float:
    """Wall seconds of the jobs (CPU seconds each) run two at a time, greedily, the independent
    decoder tables first, each job after the jobs it needs."""
    needs = {"shards": "transpose", "coactivation": "transpose", "units": "shards"}
    free, done = [0.0, 0.0], {}
    for name in sorted(cpu, key=("transpose", "influence", "cosine", "shards", "coactivation", "units").index):
        ready = done.get(needs.get(name), 0.0)
        for seconds in cpu[name]:
            worker = free.index(min(free))
            free[worker] = max(free[worker], ready) + seconds
            done[name] = max(done.get(name, 0.0), free[worker])
    return max(free)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000, help="tokens of the synthetic store")
    parser.add_argument("--features", type=int, default=16384, help="features (the seeds' Ultra size: 24576)")
    parser.add_argument("--only", default=",".join(ANALYSES), help=f"comma list of {', '.join(ANALYSES)}")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each job (best time, worst peak)")
    parser.add_argument("--naive-tokens", type=int, default=100_000, help="tokens the baseline sees")
    parser.add_argument("--naive-features", type=int, default=64, help="features the baseline loops over")
    parser.add_argument("--naive-repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100k tokens x 4096 features, a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.tokens, args.features, args.repeats = 100_000, 4096, 2
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := set(only) - set(ANALYSES):
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {', '.join(ANALYSES)}")
    if args.tokens < 2 * SEQ_LEN or args.naive_features > args.features:
        parser.error("need --tokens >= 256 and --naive-features <= --features")

    work = Path(tempfile.mkdtemp(prefix="saeflow-bench-analysis-"))
    store = Store(work, -(-args.tokens // CHUNK_TOKENS))
    try:
        counts = write_store(store, args.tokens, args.features)
        corpus = write_corpus(store, args.tokens)
        write_weights(store, args.features)
        store.pieces.mkdir()

        # Jobs in workflow order; a job that a chosen one needs runs too, untimed.
        needed = set(only) | ({"shards"} if "units" in only else set())
        needed |= {"transpose"} if needed & {"shards", "coactivation"} else set()
        rows, start_rss = {}, []
        for name in ANALYSES:
            if name not in needed:
                continue
            fn, per_shard = JOBS[name]
            jobs = ([(fn, (store, args.features, s)) for s in range(N_SHARDS)] if per_shard
                    else [(fn, (store, args.features))])
            parts = [measure(fn, fn_args, args.repeats if name in only else 1) for fn, fn_args in jobs]
            start_rss += [part[3] for part in parts]
            if name in only:
                rows[name] = parts
                print(f"{name}: {sum(part[0] for part in parts):.1f} s", file=sys.stderr, flush=True)

        # The baseline: a stratified sample of features by density rank, two token prefixes of whole sequences.
        by_rank = np.argsort(-counts, kind="stable")
        step = args.features / args.naive_features
        sample = np.sort(by_rank[(np.arange(args.naive_features) * step + step / 2).astype(int)])
        large = args.tokens if args.naive_tokens >= args.tokens else args.naive_tokens // SEQ_LEN * SEQ_LEN
        sizes = (large // 2 // SEQ_LEN * SEQ_LEN, large)
        (naive_seconds, outputs), naive_time, _, naive_peak = run_in_child(
            job_naive, store, args.features, sample, sizes, args.naive_repeats)
        if problems := check_naive(store, outputs, set(only), large == args.tokens):
            raise SystemExit("the naive baseline and the library disagree: " + "; ".join(problems[:5]))
    finally:
        shutil.rmtree(work)

    scale = args.features / args.naive_features
    naive = {name: scale * (extrapolate(naive_seconds[name], args.tokens) if isinstance(naive_seconds[name], dict)
                            else naive_seconds[name]) for name in ("shards", "influence", "cosine", "coactivation")}
    nnz = int(counts.sum())
    print(f"store: {args.tokens} tokens x {args.features} features, L0 {L0 - L0_SPREAD}..{L0 + L0_SPREAD} drawn "
          f"(mean {nnz / args.tokens:.1f} after duplicates), {store.n_chunks} CSR chunks of "
          f"{CHUNK_TOKENS}, {nnz} entries; feature density: "
          f"max {counts.max() / args.tokens:.1%}, "
          f"median {np.median(counts) / args.tokens:.3%}, {(counts < 10).sum()} with < 10 entries, "
          f"{(counts == 0).sum()} dead")
    print(f"corpus: {corpus['seqs']} sequences of {SEQ_LEN}, {corpus['docs']} documents "
          f"({corpus['labelled']} labelled, {N_LABELS} labels), vocab {VOCAB}; W_dec [{args.features}, {D_MODEL}], "
          f"W_U [{D_MODEL}, {VOCAB}]; {N_SHARDS} feature shards, one fresh process per job "
          f"(starts at {min(start_rss, default=0) / 2**20:.0f} MB RSS), best of {args.repeats}")
    print(f"naive: per-feature loop over {args.naive_features} features (stratified by density) at "
          f"{sizes[0]} and {sizes[1]} tokens, best of {args.naive_repeats}, {naive_time:.1f} s in all, "
          f"peak {naive_peak / 2**20:.0f} MB; extrapolated to {args.tokens} tokens x {args.features} features")
    print(f"{'analysis':<26}{'seconds':>9}{'cpu s':>8}{'peak RSS MB':>13}{'naive s':>10}{'vs naive':>10}")
    total, total_cpu, total_naive, peaks = 0.0, 0.0, 0.0, []
    for name, parts in rows.items():
        seconds, cpu = sum(part[0] for part in parts), sum(part[1] for part in parts)
        peak = max(part[2] for part in parts)
        total, total_cpu, peaks = total + seconds, total_cpu + cpu, peaks + [peak]
        label = {"shards": f"analyse_shard x{N_SHARDS}", "transpose": "transpose_store",
                 "units": "units (map, filter, thr)", "influence": "influence_table", "cosine": "cosine_table",
                 "coactivation": "coactivation_table"}[name]
        if name in naive:
            total_naive += naive[name]
            print(f"{label:<26}{seconds:>9.1f}{cpu:>8.1f}{peak / 2**20:>13.0f}{naive[name]:>10.0f}"
                  f"{naive[name] / seconds:>9.0f}x")
        else:
            print(f"{label:<26}{seconds:>9.1f}{cpu:>8.1f}{peak / 2**20:>13.0f}{'-':>10}{'-':>10}")
        if name == "shards":
            for shard, (shard_seconds, shard_cpu, shard_peak, _) in enumerate(parts):
                print(f"{'  shard ' + str(shard):<26}{shard_seconds:>9.1f}{shard_cpu:>8.1f}{shard_peak / 2**20:>13.0f}")
    if rows:
        print(f"{'all':<26}{total:>9.1f}{total_cpu:>8.1f}{max(peaks) / 2**20:>13.0f}{total_naive:>10.0f}"
              f"{total_naive / total:>9.0f}x")
        two_jobs = two_job_estimate({name: [part[1] for part in parts] for name, parts in rows.items()})
        print(f"two jobs at a time (--cores 2), from the cpu seconds: about {two_jobs:.0f} s")
        print(f"goal: all <= 60 s: {'yes' if total <= 60 else 'NO'} ({total:.0f} s); >= 100x the loop: "
              f"{'yes' if total_naive >= 100 * total else 'NO'} ({total_naive / total:.0f}x); peak RSS <= 2 GB: "
              f"{'yes' if max(peaks) <= 2 << 30 else 'NO'} ({max(peaks) / 2**30:.2f} GB)")


if __name__ == "__main__":
    main()
