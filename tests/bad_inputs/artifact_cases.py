"""The artifact half of the bad-input matrix (activations, sparse stores, tables, SAE files,
pretrained SAEs): each case damages one artifact the way a full disk, a killed copy or a stray
edit would, then runs the job of the workflow script that reads it.

Inputs are built small with the library's own writers, then damaged in place.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr
from safetensors.numpy import load_file, save_file

from bad_inputs.registry import Attempt, case
from saeflow import activations, chunks, decoder_tables, evaluate, feature_shard, feature_store, pretrained, splits
from saeflow import storage, train_job, units
from saeflow.sae import CFG_FILE, WEIGHTS_FILE, BatchTopKSAE

D_IN, D_SAE, K, ROWS = 8, 16, 2, 40
HOOK = ("layer-1", "hidden_states.1")  # the hook's name and spec, as the workflow passes them
SAE_CFG = {"name": "s", "model": "tiny", "hook": HOOK[0], "hook_spec": HOOK[1], "seed": 0,
           "exclude_special_tokens": True}
TRAIN = {"layer": 1, "expansion": 2, "k": K, "seed": 0, "train_tokens": 64, "batch_size": 16, "lr": None,
         "b_dec_init": "mean", "dead_tokens": None, "aux_k": None, "aux_coeff": 1 / 32, "max_grad_norm": 1.0,
         "d_sae": None, "encoding": "threshold", "exclude_special_tokens": True, "shuffle_buffer_tokens": 32,
         "checkpoint_every": 100, "log_every": 2}


# ---------------------------------------------------------------- building and damaging artifacts


def _dense_chunk(path: Path, token_start: int = 0, d: int = D_IN, attrs: dict | None = None) -> Path:
    acts = np.random.default_rng(token_start).normal(size=(ROWS, d)).astype(np.float16)
    attrs = {"model": "tiny", "hook": HOOK[1], "token_start": token_start, "dtype": "float16"} | (attrs or {})
    with storage.ZarrChunkWriter(path, attrs) as store:
        store.create("acts", acts.shape, "float16", rows_per_chunk=ROWS // 2)[:] = acts
    return path


def _tokens(path: Path, n_tokens: int = 2 * ROWS, drop: tuple[str, ...] = ()) -> Path:
    """tokens.parquet: sequences of 10 tokens, one document per sequence, a BOS first in each."""
    index = np.arange(n_tokens, dtype=np.int32)
    columns = {"seq": index // 10, "pos": index % 10, "doc": index // 10, "token_id": index % 7,
               "token": [f"t{i % 7}" for i in index], "special": index % 10 == 0,
               "start": index % 10, "end": index % 10 + 1}
    pq.write_table(pa.table({name: values for name, values in columns.items() if name not in drop}), path)
    return path


def _documents(path: Path, n_documents: int = 2 * ROWS // 10) -> Path:
    splits_ = ["calibration" if i % 2 else "test" for i in range(n_documents)]
    pq.write_table(pa.table({"doc": np.arange(n_documents, dtype=np.int32), "split": splits_}), path)
    return path


def _idf(path: Path) -> Path:
    pq.write_table(pa.table({"token_id": np.arange(7, dtype=np.int32), "token": [f"t{i}" for i in range(7)],
                             "idf": np.ones(7)}), path)
    return path


def _sae(directory: Path) -> Path:
    BatchTopKSAE(D_IN, D_SAE, K).save(directory, SAE_CFG)
    return directory


def _csr_chunk(path: Path, token_start: int = 0) -> Path:
    """A valid CSR feature chunk: token t has features t % D_SAE and (t + 3) % D_SAE."""
    first = np.arange(ROWS) % D_SAE
    pairs = np.sort(np.stack([first, (first + 3) % D_SAE], axis=1), axis=1)
    with storage.CsrChunkWriter(path, ROWS, D_SAE, token_start, "float32") as out:
        out.append(np.full(ROWS, 2), pairs.ravel(), np.ones(2 * ROWS, dtype=np.float32))
    return path


def _by_feature(path: Path, chunk_paths: list) -> Path:
    feature_store.transpose_store(chunk_paths, path, D_SAE)
    return path


def _edit_array(store: Path, name: str, edit) -> None:
    """Rewrite one array of a finished Zarr store in place (what a stray write would do)."""
    array = zarr.open_group(str(store), mode="r+")[name]
    values = array[:]
    edit(values)
    array[:] = values


def _edit_attrs(store: Path, **attrs) -> None:
    group = zarr.open_group(str(store), mode="r+")
    for name, value in attrs.items():
        if value is None:
            del group.attrs[name]
        else:
            group.attrs[name] = value


def _cut(path: Path, keep: float = 0.5) -> None:
    """Truncate a file, as a full disk or an interrupted copy does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _edit_tensors(path: Path, edit) -> None:
    tensors = load_file(str(path))
    edit(tensors)
    save_file({name: np.ascontiguousarray(t) for name, t in tensors.items()}, str(path))


def _sae_outputs(directory: Path) -> list[Path]:
    return [directory / WEIGHTS_FILE, directory / CFG_FILE, directory / "training_log.parquet"]


# ---------------------------------------------------------------- the jobs, as their scripts call them


def _encode(tmp_path: Path, sae_dir: Path, acts: Path) -> Attempt:
    """The encode_features job: load the SAE, encode one activation chunk."""
    out = tmp_path / "features" / "chunk-0000.zarr"

    def job():
        sae, _ = BatchTopKSAE.load(sae_dir)
        feature_store.encode_chunk(sae, acts, out)

    return Attempt((), job=job, outputs=[out])


def _eval(tmp_path: Path, sae_dir: Path, holdout: Path) -> Attempt:
    """The evaluate_sae job on the held-out chunk (its model is not reached before the fault)."""
    tokens, out = _tokens(tmp_path / "tokens.parquet"), tmp_path / "eval.json"
    plan_chunk = chunks.Chunk("chunk-0001", ROWS, ROWS, ROWS // 10, ROWS // 10)
    return Attempt((), job=lambda: evaluate.evaluate_sae_job(sae_dir, holdout, plan_chunk, tokens, "unused", out),
                   outputs=[out])


def _train(tmp_path: Path, chunk_paths: list, tokens: Path) -> Attempt:
    out = train_job.TrainOutputs(tmp_path / "sae", tmp_path / "sae" / "training_log.parquet", tmp_path / "ckpt")
    return Attempt((), job=lambda: train_job.train_sae_job("s", TRAIN, *HOOK, chunk_paths, tokens, "tiny", out),
                   outputs=_sae_outputs(out.directory))


def _analyse(tmp_path: Path, by_feature: Path) -> Attempt:
    """The analyse_feature_shard job: the corpus index, then every table of the shard."""
    tokens, idf, docs = _tokens(tmp_path / "tokens.parquet"), _idf(tmp_path / "idf.parquet"), \
        _documents(tmp_path / "documents.parquet")
    outputs = {name: tmp_path / "pieces" / f"{name}.parquet" for name in ("feature_stats", "top_examples")}

    def job():
        corpus = feature_shard.load_corpus_index(tokens, idf, docs)
        for name, table in feature_shard.analyse_shard(by_feature, range(0, D_SAE), corpus,
                                                       feature_shard.AnalysisParams()).items():
            storage.write_table(tmp_path / "pieces" / f"{name}.parquet", table)

    return Attempt((), job=job, outputs=list(outputs.values()))


def _import(tmp_path: Path, folder: Path, hook_width: int = D_IN) -> Attempt:
    out = tmp_path / "saes" / "p"
    return Attempt((), job=lambda: pretrained.import_pretrained_job(
        folder, "p", *HOOK, "tiny", out, out / "training_log.parquet", hook_width), outputs=_sae_outputs(out))


def _expect(attempt: Attempt, *expect: str) -> Attempt:
    attempt.expect = expect
    return attempt


def _saelens_folder(folder: Path, **cfg) -> Path:
    """A JumpReLU SAE as SAELens saves it (cfg.json + sae_weights.safetensors)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tensors = {"W_enc": rng.normal(size=(D_IN, D_SAE)), "b_enc": np.zeros(D_SAE), "W_dec": rng.normal(size=(D_SAE, D_IN)),
               "b_dec": np.zeros(D_IN), "threshold": np.full(D_SAE, 0.1)}
    save_file({name: t.astype(np.float32) for name, t in tensors.items()}, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"architecture": "jumprelu", "d_in": D_IN, "d_sae": D_SAE,
                                                 "apply_b_dec_to_input": True, **cfg}))
    return folder


# ---------------------------------------------------------------- dense activation chunks


@case("activation chunk with a truncated Zarr chunk file")
def _(tmp_path, request):
    acts = _dense_chunk(tmp_path / "acts" / "chunk-0000.zarr")
    _cut(acts / "acts" / "c" / "1" / "0")
    return _expect(_encode(tmp_path, _sae(tmp_path / "sae"), acts), "chunk-0000.zarr", "acts/c/1/0", "rerun")


@case("activation chunk holding NaN")
def _(tmp_path, request):
    paths = [_dense_chunk(tmp_path / f"chunk-000{i}.zarr", i * ROWS) for i in range(2)]
    _edit_array(paths[1], "acts", lambda a: a.__setitem__((5, 3), np.nan))
    return _expect(_train(tmp_path, paths, _tokens(tmp_path / "tokens.parquet")), "chunk-0001.zarr", "NaN",
                   "rerun")


@case("activation chunk of the wrong width")
def _(tmp_path, request):
    holdout = _dense_chunk(tmp_path / "chunk-0001.zarr", ROWS, d=D_IN - 2)
    return _expect(_eval(tmp_path, _sae(tmp_path / "sae"), holdout), "chunk-0001.zarr", "width", "rerun")


@case("activation chunk without token_start")
def _(tmp_path, request):
    paths = [_dense_chunk(tmp_path / "chunk-0000.zarr"), _dense_chunk(tmp_path / "chunk-0001.zarr", ROWS)]
    _edit_attrs(paths[1], token_start=None)
    out = tmp_path / "mean.safetensors"
    return Attempt(("chunk-0001.zarr", "token_start", "rerun"),
                   job=lambda: activations.hook_mean(paths, out), outputs=[out])


@case("activation chunk whose dtype attribute disagrees")
def _(tmp_path, request):
    acts = _dense_chunk(tmp_path / "chunk-0000.zarr", attrs={"dtype": "float32"})
    return _expect(_encode(tmp_path, _sae(tmp_path / "sae"), acts), "chunk-0000.zarr", "dtype", "rerun")


@case("activation chunk with damaged Zarr metadata")
def _(tmp_path, request):
    paths = [_dense_chunk(tmp_path / "chunk-0000.zarr"), _dense_chunk(tmp_path / "chunk-0001.zarr", ROWS)]
    (paths[0] / "zarr.json").write_text("{not json")
    return _expect(_train(tmp_path, paths, _tokens(tmp_path / "tokens.parquet")), "chunk-0000.zarr", "rerun")


# ---------------------------------------------------------------- sparse feature stores


@case("CSR chunk whose indptr does not end at nnz")
def _(tmp_path, request):
    paths = [_csr_chunk(tmp_path / "chunk-0000.zarr"), _csr_chunk(tmp_path / "chunk-0001.zarr", ROWS)]
    _edit_array(paths[1], "indptr", lambda a: a.__setitem__(-1, a[-1] - 1))
    out = tmp_path / "by_feature.zarr"
    return Attempt(("chunk-0001.zarr", "indptr", "rerun"),
                   job=lambda: feature_store.transpose_store(paths, out, D_SAE), outputs=[out])


@case("CSR chunk with a feature id past n_features")
def _(tmp_path, request):
    paths = [_csr_chunk(tmp_path / "chunk-0000.zarr"), _csr_chunk(tmp_path / "chunk-0001.zarr", ROWS)]
    _edit_array(paths[0], "indices", lambda a: a.__setitem__(-1, D_SAE))
    out = tmp_path / "neighbours_coactivation.parquet"
    n_active = np.full(D_SAE, 5)
    return Attempt(("chunk-0000.zarr", "feature ids", "rerun"), outputs=[out], job=lambda: storage.write_table(
        out, decoder_tables.coactivation_table(paths, range(0, D_SAE), D_SAE, n_active, 3)))


@case("CSR chunk holding NaN values")
def _(tmp_path, request):
    chunk = _csr_chunk(tmp_path / "chunk-0000.zarr")
    _edit_array(chunk, "values", lambda a: a.__setitem__(4, np.nan))
    unit_map, out = tmp_path / "unit_map.json", tmp_path / "filtered" / "chunk-0000.zarr"
    storage.write_json(unit_map, {"kept_units": [0, 3, 5]})
    return Attempt(("chunk-0000.zarr", "NaN", "rerun"), outputs=[out],
                   job=lambda: units.filter_chunk(chunk, units.read_kept_units(unit_map), out))


@case("CSR chunk whose n_features is not the SAE's d_sae")
def _(tmp_path, request):
    paths = [_csr_chunk(tmp_path / "chunk-0000.zarr")]
    _edit_attrs(paths[0], n_features=D_SAE * 2)
    out = tmp_path / "by_feature.zarr"
    return Attempt(("chunk-0000.zarr", "n_features", "rerun"),
                   job=lambda: feature_store.transpose_store(paths, out, D_SAE), outputs=[out])


@case("by_feature store with a falling indptr")
def _(tmp_path, request):
    by_feature = _by_feature(tmp_path / "by_feature.zarr", [_csr_chunk(tmp_path / "c0.zarr"),
                                                            _csr_chunk(tmp_path / "c1.zarr", ROWS)])
    _edit_array(by_feature, "indptr", lambda a: a.__setitem__(3, a[5]))
    return _expect(_analyse(tmp_path, by_feature), "by_feature.zarr", "indptr", "rerun")


@case("unit map whose kept_units are not sorted")
def _(tmp_path, request):
    chunk, unit_map = _csr_chunk(tmp_path / "chunk-0000.zarr"), tmp_path / "unit_map.json"
    storage.write_json(unit_map, {"kept_units": [5, 3]})
    out = tmp_path / "filtered" / "chunk-0000.zarr"
    return Attempt(("unit_map.json", "kept_units", "rerun"), outputs=[out],
                   job=lambda: units.filter_chunk(chunk, units.read_kept_units(unit_map), out))


# ---------------------------------------------------------------- tables and JSON


@case("truncated tokens.parquet")
def _(tmp_path, request):
    tokens = _tokens(tmp_path / "tokens.parquet")
    _cut(tokens)
    out = tmp_path / "chunks.json"
    return Attempt(("tokens.parquet", "Parquet", "rerun"), outputs=[out],
                   job=lambda: chunks.write_plan(out, chunks.plan_chunks(chunks.sequence_lengths(tokens), 2)))


@case("tokens.parquet without the special column")
def _(tmp_path, request):
    paths = [_dense_chunk(tmp_path / "chunk-0000.zarr"), _dense_chunk(tmp_path / "chunk-0001.zarr", ROWS)]
    tokens = _tokens(tmp_path / "tokens.parquet", drop=("special",))
    return _expect(_train(tmp_path, paths, tokens), "tokens.parquet", "special", "rerun")


@case("truncated documents table")
def _(tmp_path, request):
    unsplit = _documents(tmp_path / "documents_unsplit.parquet")
    _cut(unsplit, 0.9)
    out = tmp_path / "documents.parquet"
    return Attempt(("documents_unsplit.parquet", "rerun"), outputs=[out],
                   job=lambda: splits.split_documents(unsplit, out, 0.5, 0))


@case("chunks.json that is not a chunk plan")
def _(tmp_path, request):
    plan, tokens = tmp_path / "chunks.json", _tokens(tmp_path / "tokens.parquet")
    plan.write_text(json.dumps({"n_tokens": 80, "chunks": [{"id": "chunk-0000", "start": 0}]}))
    out = tmp_path / "acts" / "chunk-0000.zarr"
    return Attempt(("chunks.json", "chunks", "rerun"), outputs=[out], job=lambda: activations.capture_chunk(
        None, "tiny", tokens, chunks.find_chunk(plan, "chunk-0000"), {HOOK[0]: HOOK[1]}, {HOOK[0]: out}))


@case("eval.json that is not JSON")
def _(tmp_path, request):
    sae_dir = _sae(tmp_path / "sae")
    (sae_dir / "eval.json").write_text('{"fvu": 0.1,')
    out, tsv = tmp_path / "metrics.parquet", tmp_path / "metrics.tsv"
    return Attempt(("eval.json", "not valid JSON", "rerun"), outputs=[out, tsv], job=lambda: evaluate.gather_metrics(
        ["s"], [sae_dir / "eval.json"], [sae_dir / CFG_FILE], out, tsv))


# ---------------------------------------------------------------- SAE files


@case("SAE weights of the wrong shape")
def _(tmp_path, request):
    sae_dir = _sae(tmp_path / "sae")
    _edit_tensors(sae_dir / WEIGHTS_FILE, lambda t: t.update(W_enc=t["W_enc"][:, : D_SAE // 2]))
    holdout = _dense_chunk(tmp_path / "chunk-0001.zarr", ROWS)
    return _expect(_eval(tmp_path, sae_dir, holdout), WEIGHTS_FILE, "W_enc", "retrain")


@case("SAE weights missing a tensor")
def _(tmp_path, request):
    sae_dir = _sae(tmp_path / "sae")
    _edit_tensors(sae_dir / WEIGHTS_FILE, lambda t: t.pop("threshold"))
    acts = _dense_chunk(tmp_path / "chunk-0000.zarr")
    return _expect(_encode(tmp_path, sae_dir, acts), WEIGHTS_FILE, "threshold", "retrain")


@case("truncated SAE weights")
def _(tmp_path, request):
    sae_dir = _sae(tmp_path / "sae")
    _cut(sae_dir / WEIGHTS_FILE)
    holdout = _dense_chunk(tmp_path / "chunk-0001.zarr", ROWS)
    return _expect(_eval(tmp_path, sae_dir, holdout), WEIGHTS_FILE, "retrain")


@case("SAE weights holding NaN")
def _(tmp_path, request):
    sae_dir = _sae(tmp_path / "sae")
    _edit_tensors(sae_dir / WEIGHTS_FILE, lambda t: t["W_dec"].__setitem__((2, 1), np.nan))
    acts = _dense_chunk(tmp_path / "chunk-0000.zarr")
    return _expect(_encode(tmp_path, sae_dir, acts), WEIGHTS_FILE, "W_dec", "NaN", "retrain")


@case("SAE cfg.json that is not JSON")
def _(tmp_path, request):
    sae_dir = _sae(tmp_path / "sae")
    (sae_dir / CFG_FILE).write_text('{"d_in": 8, "d_sae":')
    acts = _dense_chunk(tmp_path / "chunk-0000.zarr")
    return _expect(_encode(tmp_path, sae_dir, acts), CFG_FILE, "not valid JSON", "retrain")


@case("SAE cfg.json without d_sae")
def _(tmp_path, request):
    sae_dir = _sae(tmp_path / "sae")
    cfg = json.loads((sae_dir / CFG_FILE).read_text())
    (sae_dir / CFG_FILE).write_text(json.dumps({k: v for k, v in cfg.items() if k != "d_sae"}))
    holdout = _dense_chunk(tmp_path / "chunk-0001.zarr", ROWS)
    return _expect(_eval(tmp_path, sae_dir, holdout), CFG_FILE, "d_sae", "retrain")


# ---------------------------------------------------------------- pretrained SAE folders (the user's)


@case("pretrained SAE with weights of the wrong shape")
def _(tmp_path, request):
    folder = _saelens_folder(tmp_path / "pretrained")
    _edit_tensors(folder / "sae_weights.safetensors", lambda t: t.update(b_enc=t["b_enc"][:-1]))
    return _expect(_import(tmp_path, folder), "saes.p.pretrained", "sae_weights.safetensors", "b_enc",
                   "give the folder SAELens saved")


@case("pretrained SAE missing the threshold tensor")
def _(tmp_path, request):
    folder = _saelens_folder(tmp_path / "pretrained")
    _edit_tensors(folder / "sae_weights.safetensors", lambda t: t.pop("threshold"))
    return _expect(_import(tmp_path, folder), "saes.p.pretrained", "sae_weights.safetensors", "threshold",
                   "give the folder SAELens saved")


@case("pretrained SAE on a hook of another width")
def _(tmp_path, request):
    folder = _saelens_folder(tmp_path / "pretrained")
    return _expect(_import(tmp_path, folder, hook_width=D_IN * 2), "saes.p.pretrained", str(folder),
                   "point the SAE at the hook")


@case("pretrained SAE with truncated weights")
def _(tmp_path, request):
    folder = _saelens_folder(tmp_path / "pretrained")
    _cut(folder / "sae_weights.safetensors")
    return _expect(_import(tmp_path, folder), "saes.p.pretrained", "sae_weights.safetensors",
                   "give the folder SAELens saved")


@case("pretrained SAE whose cfg.json is not JSON")
def _(tmp_path, request):
    folder = _saelens_folder(tmp_path / "pretrained")
    (folder / "cfg.json").write_text("architecture: jumprelu\n")
    return _expect(_import(tmp_path, folder), "saes.p.pretrained", "cfg.json", "give the folder SAELens saved")


@case("pretrained SAE whose cfg.json disagrees with its weights")
def _(tmp_path, request):
    folder = _saelens_folder(tmp_path / "pretrained", d_sae=D_SAE * 2)
    return _expect(_import(tmp_path, folder), "saes.p.pretrained", "d_sae", "give the folder SAELens saved")
