"""Benchmark the SAE stage on CPU, each part against a naive baseline measured in the same run.

- train: tokens/s of saeflow.train.train_sae on in-memory float32 batches, against the bare
  forward+backward of the same matmuls (no top-k, AuxK, decoder-norm step or bookkeeping).
- encode: tokens/s of encode_chunk on a float16 Zarr chunk (read, encode, gather the nonzeros,
  write), against a bare sae.encode on the same rows already in memory.
- store: bytes per active entry of the CSR chunk it wrote (goal <= 5) and per token, against
  float32 dense (4 x d_sae bytes per token).
- transpose: entries/s and peak RSS of transpose_store on a synthetic CSR store (variable L0,
  skewed feature densities), against loading every entry and one global argsort; each runs in
  its own child process so that its peak is its own.
- quality: held-out FVU, L0 and dead fraction against training wall time (--budgets seconds) of
  the default SAE (config.yaml's saes.default) on the default run's activations, for saeflow's
  trainer and for a plain reference BatchTopK trainer (bench/_reference_batchtopk.py) on the
  same rows, both evaluated by the pipeline's eval under the threshold encoding. Each budget is
  a full run (warm-up to decay) sized from a calibration run's seconds per step. Needs the
  default run's activations (`snakemake --cores all results/activations/layer-3/mean.safetensors`).

Usage: python bench/sae.py [--tokens 1000000] [--features 16384] [--steps 16] [--repeats 2]
                           [--budgets 30,60,120,180] [--results results] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from zarr.codecs.numcodecs import Delta

from _reference_batchtopk import train_reference
from _rss import best_of, run_in_child
from _synthetic_store import L0, L0_SPREAD, draw_csr, token_l0s
from saeflow.batches import batch_source, special_row_offsets
from saeflow.config import sae_width
from saeflow.evaluate import reconstruction_metrics
from saeflow.feature_store import encode_chunk, transpose_store
from saeflow.sae import BatchTopKSAE
from saeflow.storage import CsrChunkWriter, ZarrChunkWriter, read_sparse_chunk
from saeflow.train_job import train_config
from saeflow.trainer import TrainConfig, geometric_median, train_sae, unit_mean_squared_norm_scale

# The default SAE: expansion 8 on all-MiniLM-L6-v2's d_model 384, k 32, batch 4096.
D_IN, D_SAE, K, BATCH = 384, 3072, 32, 4096
CHUNK_TOKENS = 32768  # activations.tokens_per_chunk, also the feature store's chunking
ZIPF_EXPONENT = 0.8  # at 16384 features: the densest fires on ~2/3 of tokens, the median on ~0.1%


def gaussian_acts(rng, n, d_in=D_IN) -> np.ndarray:
    """Stand-in activations: an offset and uneven per-dimension scales, like a residual stream,
    so that b_dec's init and the input scale have something to do."""
    offset = np.linspace(-1, 1, d_in)
    scale = np.exp(np.linspace(-1, 1, d_in))
    return (rng.standard_normal((n, d_in)) * scale + offset).astype(np.float32)


def fastest_step_seconds(run, repeats) -> float:
    """Seconds of the fastest step over `repeats` runs, the first step of each left out (it pays
    for allocation and set-up). Other processes only ever add time, so on a shared machine the
    minimum is the closest to the code's own cost. `run()` returns a timestamp after each step."""
    return min(np.diff(run()).min() for _ in range(repeats))


def trainer_run(batches, steps):
    """One train_sae run; returns its per-step timestamps and the trained SAE."""
    cfg = TrainConfig(k=K, d_sae=D_SAE, total_tokens=steps * BATCH, batch_size=BATCH,
                      log_every=10**9)  # only the last step logs, as one in log_every does in a real run
    stamps = []
    sae, _ = train_sae(lambda start: (batches[i % len(batches)] for i in itertools.count(start)), D_IN, cfg,
                       init_sample=batches[0], input_scale=unit_mean_squared_norm_scale(batches[0]),
                       progress=lambda step, total, row: stamps.append(time.perf_counter()))
    return stamps, sae


def bare_run(batches, steps, adam):
    """The baseline: relu encoder, dense decoder and the MSE's backward, on the same shapes."""
    gen = torch.Generator().manual_seed(0)
    W_enc_DF = (torch.randn(D_IN, D_SAE, generator=gen) / D_IN**0.5).requires_grad_()
    W_dec_FD = (torch.randn(D_SAE, D_IN, generator=gen) / D_IN**0.5).requires_grad_()
    b_enc_F, b_dec_D = torch.zeros(D_SAE, requires_grad=True), torch.zeros(D_IN, requires_grad=True)
    params = [W_enc_DF, b_enc_F, W_dec_FD, b_dec_D]
    optimizer = torch.optim.Adam(params, lr=1e-4) if adam else None
    stamps = []
    for step in range(steps):
        x_ND = torch.from_numpy(batches[step % len(batches)])
        recon_ND = ((x_ND - b_dec_D) @ W_enc_DF + b_enc_F).relu() @ W_dec_FD + b_dec_D
        (recon_ND - x_ND).pow(2).sum(-1).mean().backward()
        if optimizer is not None:
            optimizer.step()
        for param in params:
            param.grad = None
        stamps.append(time.perf_counter())
    return stamps


def store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def write_synthetic_store(directory: Path, n_tokens, n_features, seed=0):
    """CSR chunks in the contract's format, drawn directly (no SAE): each token draws L0 ± L0_SPREAD
    feature ids from Zipf-like densities; a feature drawn twice keeps one entry. Returns the chunk
    paths and the entries per feature."""
    rng = np.random.default_rng(seed)
    # Ranks shuffled over ids: a trained SAE's dense features are spread over the id range, and
    # the transpose's feature groups are id ranges.
    weights = rng.permutation(1 / np.arange(1, n_features + 1) ** ZIPF_EXPONENT)
    cdf = np.cumsum(weights) / weights.sum()
    counts, paths = np.zeros(n_features, np.int64), []
    for chunk, start in enumerate(range(0, n_tokens, CHUNK_TOKENS)):
        n = min(CHUNK_TOKENS, n_tokens - start)
        row_counts, ids = draw_csr(rng, cdf, token_l0s(rng, n))
        values = (rng.exponential(size=len(ids)) + 1e-3).astype(np.float32)
        counts += np.bincount(ids, minlength=n_features)
        path = directory / f"chunk-{chunk:04d}.zarr"
        with CsrChunkWriter(path, n, n_features, start, "float32") as store:  # as encode_chunk writes it
            store.append(row_counts, ids, values)
        paths.append(path)
    return paths, counts


def naive_transpose(chunk_paths, out_path, n_features):
    """The baseline: every entry in memory at once, one global argsort by (feature, token), and
    the same output arrays as transpose_store writes."""
    features, tokens, values, n_tokens = [], [], [], 0
    for path in chunk_paths:
        chunk = read_sparse_chunk(path)
        features.append(chunk.indices)
        tokens.append(chunk.entry_rows() + chunk.token_start)
        values.append(chunk.values)
        n_tokens += chunk.n_tokens
    feature, token, value = (np.concatenate(parts) for parts in (features, tokens, values))
    order = np.argsort(feature.astype(np.int64) * n_tokens + token)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(feature, minlength=n_features))]).astype(np.int64)
    with ZarrChunkWriter(out_path, {"n_features": n_features, "n_tokens": n_tokens}) as store:
        store.create("indptr", indptr.shape, "int64")[:] = indptr
        store.create("token", token.shape, "int64", rows_per_chunk=1 << 20,
                     filters=[Delta(dtype="int64")])[:] = token[order]
        store.create("value", value.shape, "float32", rows_per_chunk=1 << 20)[:] = value[order]


def same_csc(a: Path, b: Path) -> bool:
    """Both transposes must hold the same arrays, or the comparison means nothing."""
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    return all(np.array_equal(ga[name][:], gb[name][:]) for name in ("indptr", "token", "value"))


def default_sae_settings() -> dict:
    """config.yaml's saes.default with the schema's defaults filled in, as the workflow sees it."""
    import yaml
    from snakemake.utils import validate

    root = Path(__file__).resolve().parent.parent
    config = yaml.safe_load((root / "config.yaml").read_text())
    validate(config, str(root / "config.schema.yaml"))
    return config["saes"]["default"]


def quality_rows(results: Path, budgets: list[float]) -> list[tuple]:
    """(trainer, budget s, wall s, steps, held-out fvu, l0, dead) for each trainer and budget."""
    settings = default_sae_settings()
    chunks = sorted((results / f"activations/layer-{settings['layer']}").glob("chunk-*.zarr"))
    tokens = results / "corpus/tokens.parquet"
    if len(chunks) < 2 or not tokens.exists():
        print(f"quality: skipped, no activations under {results} (build them with the workflow first)")
        return []
    excluded = [special_row_offsets(path, tokens) for path in chunks]
    train, holdout = chunks[:-1], chunks[-1]
    d_in = zarr.open_group(str(chunks[0]), mode="r")["acts"].shape[1]
    d_sae = sae_width("default", settings, d_in)
    source = batch_source(train, settings["batch_size"], settings["shuffle_buffer_tokens"], settings["seed"], excluded[:-1])
    sample = next(source(0))
    scale = unit_mean_squared_norm_scale(sample)

    def ours(steps, progress=None):
        cfg = train_config({**settings, "train_tokens": steps * settings["batch_size"]}, d_sae)
        sae, _ = train_sae(source, d_in, cfg, init_sample=sample, input_scale=scale,
                           progress=progress and (lambda step, total, row: progress()))
        return sae

    def reference(steps, progress=None):
        cfg = train_config({**settings, "train_tokens": steps * settings["batch_size"]}, d_sae)
        weights = train_reference(source(0), d_in, d_sae, cfg.k, steps, cfg.resolved_lr(), scale,
                                  geometric_median(sample), cfg.dead_tokens, cfg.seed, progress)
        sae = BatchTopKSAE(d_in, d_sae, cfg.k)
        sae.load_state_dict({name: torch.from_numpy(array) for name, array in weights.items()})
        return sae

    def calibrate(train_fn, steps=40):
        """(set-up seconds, median seconds per step) of a short run, from per-step timestamps:
        each sized run pays the set-up (shuffle buffer, b_dec's geometric median) once too."""
        stamps = [time.perf_counter()]
        train_fn(steps, lambda: stamps.append(time.perf_counter()))
        return stamps[1] - stamps[0], float(np.median(np.diff(stamps[1:])))

    rows = []
    for name, train_fn in (("saeflow", ours), ("reference", reference)):
        setup, seconds_per_step = calibrate(train_fn)
        for budget in budgets:
            steps = max(2, int((budget - setup) / seconds_per_step))
            start = time.perf_counter()
            sae = train_fn(steps)
            wall = time.perf_counter() - start
            metrics = reconstruction_metrics(sae, holdout, excluded[-1])
            rows.append((name, budget, wall, steps, metrics["fvu"], metrics["l0"], metrics["dead_fraction"]))
            print(f"  {name:<10} {budget:>6.0f} s budget: {steps} steps in {wall:.0f} s, held-out fvu "
                  f"{metrics['fvu']:.4f}, l0 {metrics['l0']:.1f}, dead {metrics['dead_fraction']:.2%}", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000, help="tokens of the synthetic store to transpose")
    parser.add_argument("--features", type=int, default=16384, help="features of the synthetic store")
    parser.add_argument("--steps", type=int, default=16, help="training steps per run")
    parser.add_argument("--encode-tokens", type=int, default=CHUNK_TOKENS, help="rows of the dense chunk to encode")
    parser.add_argument("--max-entries", type=int, default=1 << 24, help="transpose_store's memory budget")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--budgets", default="30,60,120,180", help="training seconds of the quality runs ('' skips them)")
    parser.add_argument("--results", type=Path, default=Path("results"), help="the default run's results folder")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step is not timed")
    if args.quick:  # a smaller budget too, so that the transpose still takes several feature groups
        args.tokens, args.features, args.steps, args.encode_tokens = 100_000, 4096, 4, 8192
        args.max_entries, args.repeats, args.budgets = 1 << 20, 1, "5"

    budgets = [float(b) for b in args.budgets.split(",") if b]
    quality = quality_rows(args.results, budgets) if budgets else []
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="saeflow-bench-sae-"))
    rows = []  # (what, seconds, rate, unit, ratio, peak MB)
    try:
        # ---- train. AuxK is off here: no latent goes dead within dead_tokens (10M) in so few steps.
        batches = [gaussian_acts(rng, BATCH) for _ in range(min(args.steps, 8))]
        bare = fastest_step_seconds(lambda: bare_run(batches, args.steps, adam=False), args.repeats)
        bare_adam = fastest_step_seconds(lambda: bare_run(batches, args.steps, adam=True), args.repeats)
        trained = []  # the SAEs trained here; the last one encodes below

        def trainer_stamps():
            stamps, sae = trainer_run(batches, args.steps)
            trained.append(sae)
            return stamps

        trainer = fastest_step_seconds(trainer_stamps, args.repeats)
        for what, seconds in [("train bare fwd+bwd", bare), ("train bare fwd+bwd+Adam", bare_adam),
                              ("train train_sae", trainer)]:
            rows.append((what, seconds, BATCH / seconds, "tokens/s", seconds / bare, None))

        # ---- encode and store, with an SAE trained a few steps on the same kind of data (no
        # trained SAE on real activations here). Real stores compress about the same: the
        # default one (MiniLM layer 3) measured 4.2 B per active entry.
        sae = trained[-1]
        acts = gaussian_acts(rng, args.encode_tokens).astype(np.float16)
        acts_path, features_path = work / "acts.zarr", work / "features.zarr"
        with ZarrChunkWriter(acts_path, {"token_start": 0, "layer": 3, "dtype": "float16"}) as store:
            store.create("acts", acts.shape, "float16")[:] = acts  # as capture_chunk writes it
        acts_f32 = torch.from_numpy(acts.astype(np.float32))
        with torch.inference_mode():
            bare_encode = best_of(args.repeats, lambda: sae.encode(acts_f32))
        encode = best_of(args.repeats, lambda: encode_chunk(sae, acts_path, features_path))
        rows.append(("encode bare sae.encode", bare_encode, len(acts) / bare_encode, "tokens/s", 1.0, None))
        rows.append(("encode encode_chunk", encode, len(acts) / encode, "tokens/s", encode / bare_encode, None))

        stored = store_bytes(features_path)
        active = int(zarr.open_group(str(features_path), mode="r")["indptr"][-1])
        dense_per_token = 4 * D_SAE
        rows.append(("store float32 dense", None, dense_per_token, "B/token", 1.0, None))
        per_token = stored / len(acts)
        rows.append(("store CSR chunk", None, per_token, "B/token", per_token / dense_per_token, None))
        rows.append(("store CSR chunk (goal <= 5)", None, stored / active, "B/entry", None, None))

        # ---- transpose, each side in a fresh child process.
        store_dir = work / "store"
        store_dir.mkdir()
        chunk_paths, counts = write_synthetic_store(store_dir, args.tokens, args.features)
        nnz = int(counts.sum())
        runs = {}  # name: (best seconds, worst peak RSS, RSS before the call)
        for name, fn, fn_args in [
            ("transpose naive argsort", naive_transpose, (chunk_paths, work / "naive.zarr", args.features)),
            ("transpose transpose_store", transpose_store,
             (chunk_paths, work / "by_feature.zarr", args.features, args.max_entries)),
        ]:
            # The worst peak of the repeats, as memory is what a job must be granted.
            measured = [run_in_child(fn, *fn_args)[1:] for _ in range(args.repeats)]
            seconds, before, peak = zip(*measured)
            runs[name] = (min(seconds), max(peak), min(before))
        if not same_csc(work / "naive.zarr", work / "by_feature.zarr"):
            raise SystemExit("transpose_store and the naive transpose disagree")
        (naive_seconds, naive_peak, start_rss), (_, streamed_peak, _) = runs.values()
        for what, (seconds, peak, _) in runs.items():
            rows.append((what, seconds, nnz / seconds, "entries/s", seconds / naive_seconds, peak / 2**20))
    finally:
        shutil.rmtree(work)

    print(f"SAE d_in {D_IN}, d_sae {D_SAE}, k {K}, batch {BATCH}; {args.steps} training steps per run "
          f"(train: the fastest step, step 1 left out); encode {args.encode_tokens} tokens; "
          f"{torch.get_num_threads()} threads, "
          f"best of {args.repeats}")
    print(f"transpose: {args.tokens} tokens x {args.features} features, {len(chunk_paths)} chunks of "
          f"{CHUNK_TOKENS}, L0 {L0 - L0_SPREAD}..{L0 + L0_SPREAD} drawn, {nnz} entries, densest feature "
          f"on {counts.max() / args.tokens:.0%} of tokens, budget {args.max_entries} entries; "
          f"each side in a fresh process that starts at {start_rss / 2**20:.0f} MB RSS (interpreter + imports)")
    print(f"{'what':<32}{'seconds':>9}{'rate':>13} {'unit':<10}{'vs base':>8}{'peak RSS MB':>13}")
    for what, seconds, rate, unit, ratio, peak in rows:
        print(f"{what:<32}{'-' if seconds is None else f'{seconds:.3f}':>9}{rate:>13,.{1 if rate < 100 else 0}f} "
              f"{unit:<10}{'-' if ratio is None else f'{ratio:.3f}':>8}{'-' if peak is None else f'{peak:.0f}':>13}")
    print(f"transpose_store peak RSS / naive peak RSS: {streamed_peak / naive_peak:.2f}; "
          f"above the {start_rss / 2**20:.0f} MB start: {(streamed_peak - start_rss) / (naive_peak - start_rss):.2f}")
    if quality:
        print(f"\nheld-out quality against training wall time (default SAE, {args.results}, threshold encoding)")
        print(f"{'trainer':<12}{'budget s':>9}{'wall s':>8}{'steps':>7}{'fvu':>8}{'l0':>7}{'dead':>8}{'fvu / ref':>11}")
        reference = {budget: fvu for name, budget, _, _, fvu, _, _ in quality if name == "reference"}
        for name, budget, wall, steps, fvu, l0, dead in quality:
            print(f"{name:<12}{budget:>9.0f}{wall:>8.0f}{steps:>7}{fvu:>8.4f}{l0:>7.1f}{dead:>8.2%}"
                  f"{fvu / reference[budget]:>11.3f}")


if __name__ == "__main__":
    main()
