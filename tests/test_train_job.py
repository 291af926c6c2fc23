import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from saeflow.chunks import Chunk
from saeflow.config import sae_width
from saeflow.errors import SaeflowError
from saeflow.evaluate import evaluate_sae_job, gather_metrics
from saeflow.storage import ZarrChunkWriter, read_safetensors
from saeflow.train_job import TrainOutputs, check_chunks, train_sae_job

SETTINGS = {"layer": 1, "expansion": 4, "k": 3, "seed": 0, "train_tokens": 640, "batch_size": 64,
            "lr": None, "b_dec_init": "mean", "dead_tokens": None, "aux_k": None, "aux_coeff": 1 / 32,
            "max_grad_norm": 1.0, "d_sae": None, "encoding": "threshold", "exclude_special_tokens": True,
            "shuffle_buffer_tokens": 128, "checkpoint_every": 5, "log_every": 2}
HOOK = ("layer-1", "hidden_states.1")  # the hook's name and spec, as the workflow passes them
ROWS = 100
SPECIAL_EVERY = 10  # rows 0, 10, 20, ... of the corpus are special tokens (a BOS per sequence)


def write_chunks(tmp_path, n_chunks=3, rows=ROWS, d=8, hook="hidden_states.1", poison=None):
    """Activation chunks whose special-token rows are huge (1e3), as BOS rows often are."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n_chunks):
        acts = rng.normal(size=(rows, d)).astype(np.float16)
        acts[::SPECIAL_EVERY] = 1e3
        if poison == i:
            acts[7, 2] = np.nan
        path = tmp_path / f"chunk-{i:04d}.zarr"
        with ZarrChunkWriter(path, {"token_start": i * rows, "hook": hook, "dtype": "float16"}) as store:
            store.create("acts", acts.shape, "float16")[:] = acts
        paths.append(path)
    return paths


def write_tokens(tmp_path, n_tokens=3 * ROWS):
    path = tmp_path / "tokens.parquet"
    special = np.arange(n_tokens) % SPECIAL_EVERY == 0
    pq.write_table(pa.table({"seq": np.arange(n_tokens, dtype=np.int32) // SPECIAL_EVERY, "special": special}), path,
                   row_group_size=64)
    return path


def outputs(tmp_path):
    return TrainOutputs(tmp_path / "sae", tmp_path / "sae/training_log.parquet", tmp_path / "sae/checkpoint")


def test_train_writes_the_artifacts_and_resumes_after_a_kill(tmp_path, minilm):
    paths, tokens = write_chunks(tmp_path), write_tokens(tmp_path)
    out = outputs(tmp_path)
    # Killed at step 7, two steps after the checkpoint of step 5.
    train_sae_job("s", SETTINGS, *HOOK, paths[:2], tokens, "org/model", out, stop_after_steps=7)
    assert (out.checkpoint / "checkpoint.json").exists() and not (out.directory / "cfg.json").exists()
    train_sae_job("s", SETTINGS, *HOOK, paths[:2], tokens, "org/model", out)
    cfg = json.loads((out.directory / "cfg.json").read_text())
    assert {key: cfg[key] for key in ("name", "d_in", "d_sae", "k", "architecture", "trained_as", "encoding",
                                      "model", "hook", "hook_spec", "seed")} == {
        "name": "s", "d_in": 8, "d_sae": 32, "k": 3, "architecture": "jumprelu", "trained_as": "batchtopk",
        "encoding": "threshold", "model": "org/model", "hook": "layer-1", "hook_spec": "hidden_states.1", "seed": 0}
    # The special rows (norm ~2800) are out of the scaling sample: the scale is that of N(0, 1)
    # rows in 8 dimensions, 1/sqrt(8), not ~1/2800.
    assert cfg["input_scale"] == pytest.approx(1 / np.sqrt(8), rel=0.1)
    log = pq.read_table(out.training_log).to_pylist()
    assert [row["step"] for row in log] == [2, 4, 6, 8, 10]
    assert [row["tokens_seen"] for row in log] == [128, 256, 384, 512, 640]
    weights = read_safetensors(out.directory / "sae_weights.safetensors")
    assert log[-1]["threshold"] > 0 and np.all(weights["threshold"] == np.float32(log[-1]["threshold"]))
    assert not out.checkpoint.exists()

    fresh = outputs(tmp_path / "fresh")
    train_sae_job("s", SETTINGS, *HOOK, paths[:2], tokens, "org/model", fresh)
    assert (fresh.directory / "sae_weights.safetensors").read_bytes() == (out.directory / "sae_weights.safetensors").read_bytes()

    # Held-out eval reads the saved SAE and leaves out the held-out chunk's special rows too.
    metrics = evaluate_sae_job(out.directory, paths[2], Chunk("chunk-0002", 200, 100, 0, 1), tokens, str(minilm),
                               tmp_path / "eval.json")
    assert json.loads((tmp_path / "eval.json").read_text()) == metrics
    assert metrics["holdout_tokens"] == ROWS - ROWS // SPECIAL_EVERY
    assert metrics["fvu"] < 1


def test_special_tokens_stay_in_when_configured(tmp_path):
    paths, tokens = write_chunks(tmp_path), write_tokens(tmp_path)
    out = outputs(tmp_path)
    train_sae_job("s", {**SETTINGS, "exclude_special_tokens": False}, *HOOK, paths[:2], tokens, "org/model", out)
    assert json.loads((out.directory / "cfg.json").read_text())["input_scale"] < 0.01


def test_width_and_k_checks_name_the_key():
    assert sae_width("a", {"d_sae": None, "expansion": 2, "k": 4}, 32) == 64
    assert sae_width("a", {"d_sae": 100, "expansion": 2, "k": 4}, 32) == 100
    with pytest.raises(SaeflowError, match=r"saes\.a\.k: k=64 must be smaller than d_sae=64"):
        sae_width("a", {"d_sae": None, "expansion": 2, "k": 64}, 32)


def test_bad_chunks_are_named(tmp_path):
    with pytest.raises(SaeflowError, match=r"chunk-0000\.zarr: holds hook 'hidden_states.2', but saes\.s reads "
                                           r"layer-1 = 'hidden_states.1'"):
        check_chunks(write_chunks(tmp_path / "a", hook="hidden_states.2"), *HOOK, "s")
    with pytest.raises(SaeflowError, match=r"no training chunk.*tokens_per_chunk"):
        check_chunks([], *HOOK, "s")
    with pytest.raises(SaeflowError, match=r"chunk-0005\.zarr: Zarr store not found"):
        check_chunks([*write_chunks(tmp_path / "c"), tmp_path / "c/chunk-0005.zarr"], *HOOK, "s")
    paths = write_chunks(tmp_path / "d", poison=0)
    with pytest.raises(SaeflowError, match=r"chunk-0000\.zarr: non-finite activation .* row 7"):
        train_sae_job("s", SETTINGS, *HOOK, paths, write_tokens(tmp_path / "d"), "org/model", outputs(tmp_path / "d"))


def test_metrics_gather_one_row_per_sae(tmp_path):
    for name, (hook, d_sae, fvu) in {"a": ("layer-1", 64, 0.2), "b": ("mlp", 128, 0.1)}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "cfg.json").write_text(json.dumps({"hook": hook, "d_sae": d_sae, "k": 4}))
        (tmp_path / name / "eval.json").write_text(json.dumps({"fvu": fvu, "l0": 4.0, "ce_recovered": None}))
    gather_metrics(["a", "b"], [tmp_path / "a/eval.json", tmp_path / "b/eval.json"],
                   [tmp_path / "a/cfg.json", tmp_path / "b/cfg.json"], tmp_path / "metrics.parquet")
    assert pq.read_table(tmp_path / "metrics.parquet").to_pylist() == [
        {"name": "a", "hook": "layer-1", "d_sae": 64, "k": 4, "fvu": 0.2, "l0": 4.0, "ce_recovered": None},
        {"name": "b", "hook": "mlp", "d_sae": 128, "k": 4, "fvu": 0.1, "l0": 4.0, "ce_recovered": None},
    ]
