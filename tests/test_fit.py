import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from saeflow.chunks import Chunk
from saeflow.config import sae_width
from saeflow.errors import SaeflowError
from saeflow.fit import SaeOutputs, check_chunks, fit_sae, gather_metrics
from saeflow.storage import ZarrChunkWriter

SETTINGS = {"layer": 1, "expansion": 4, "k": 3, "seed": 0, "train_tokens": 640, "batch_size": 64,
            "lr": None, "b_dec_init": "mean", "dead_tokens": None, "aux_k": None, "aux_coeff": 1 / 32,
            "shuffle_buffer_tokens": 128, "checkpoint_every": 5, "log_every": 2}


def write_chunks(tmp_path, n_chunks=3, rows=100, d=8, layer=1, poison=None):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n_chunks):
        acts = rng.normal(size=(rows, d)).astype(np.float16)
        if poison == i:
            acts[7, 2] = np.nan
        path = tmp_path / f"chunk-{i:04d}.zarr"
        with ZarrChunkWriter(path, {"token_start": i * rows, "layer": layer, "dtype": "float16"}) as store:
            store.create("acts", acts.shape, "float16")[:] = acts
        paths.append(path)
    return paths


def outputs(tmp_path):
    return SaeOutputs(tmp_path / "sae", tmp_path / "sae/training_log.parquet", tmp_path / "sae/eval.json",
                      tmp_path / "sae/checkpoint")


def test_fit_writes_the_four_artifacts_and_resumes_after_a_kill(tmp_path, minilm):
    paths = write_chunks(tmp_path)
    holdout = Chunk("chunk-0002", 200, 100, 0, 1)
    out = outputs(tmp_path)
    # Killed at step 7, two steps after the checkpoint of step 5.
    assert fit_sae("s", SETTINGS, paths, holdout, None, str(minilm), out, stop_after_steps=7) == {}
    assert (out.checkpoint / "checkpoint.json").exists() and not out.eval.exists()
    metrics = fit_sae("s", SETTINGS, paths, holdout, None, str(minilm), out)
    cfg = json.loads((out.directory / "cfg.json").read_text())
    assert {cfg[key] for key in ("name", "d_in", "d_sae", "k", "architecture", "layer", "seed")} == {
        "s", 8, 32, 3, "batchtopk", 1, 0}
    log = pq.read_table(out.training_log).to_pylist()
    assert [row["step"] for row in log] == [2, 4, 6, 8, 10]
    assert [row["tokens_seen"] for row in log] == [128, 256, 384, 512, 640]
    assert json.loads(out.eval.read_text()) == metrics and metrics["holdout_tokens"] == 100
    assert metrics["l0"] <= 3 and not out.checkpoint.exists()

    fresh = outputs(tmp_path / "fresh")
    fit_sae("s", SETTINGS, paths, holdout, None, str(minilm), fresh)
    assert (fresh.directory / "sae_weights.safetensors").read_bytes() == (out.directory / "sae_weights.safetensors").read_bytes()


def test_width_and_k_checks_name_the_key():
    assert sae_width("a", {"expansion": 2, "k": 4}, 32) == 64
    assert sae_width("a", {"d_sae": 100, "expansion": 2, "k": 4}, 32) == 100
    with pytest.raises(SaeflowError, match=r"saes\.a\.k: k=64 must be smaller than d_sae=64"):
        sae_width("a", {"expansion": 2, "k": 64}, 32)


def test_bad_chunks_are_named(tmp_path):
    with pytest.raises(SaeflowError, match=r"chunk-0000\.zarr: holds layer 2, but saes\.s\.layer is 1"):
        check_chunks(write_chunks(tmp_path / "a", layer=2), 1, "s")
    with pytest.raises(SaeflowError, match=r"only 1 activation chunk.*tokens_per_chunk"):
        check_chunks(write_chunks(tmp_path / "b", n_chunks=1), 1, "s")
    with pytest.raises(SaeflowError, match=r"chunk-0005\.zarr: Zarr store not found"):
        check_chunks([*write_chunks(tmp_path / "c"), tmp_path / "c/chunk-0005.zarr"], 1, "s")
    paths = write_chunks(tmp_path / "d", poison=0)
    with pytest.raises(SaeflowError, match=r"chunk-0000\.zarr: non-finite activation .* row 7"):
        fit_sae("s", SETTINGS, paths, Chunk("chunk-0002", 200, 100, 0, 1), None, "unused", outputs(tmp_path / "d"))


def test_metrics_gather_one_row_per_sae(tmp_path):
    for name, (layer, d_sae, fvu) in {"a": (1, 64, 0.2), "b": (2, 128, 0.1)}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "cfg.json").write_text(json.dumps({"layer": layer, "d_sae": d_sae, "k": 4}))
        (tmp_path / name / "eval.json").write_text(json.dumps({"fvu": fvu, "l0": 4.0, "ce_recovered": None}))
    gather_metrics(["a", "b"], [tmp_path / "a/eval.json", tmp_path / "b/eval.json"],
                   [tmp_path / "a/cfg.json", tmp_path / "b/cfg.json"], tmp_path / "metrics.parquet")
    assert pq.read_table(tmp_path / "metrics.parquet").to_pylist() == [
        {"name": "a", "layer": 1, "d_sae": 64, "k": 4, "fvu": 0.2, "l0": 4.0, "ce_recovered": None},
        {"name": "b", "layer": 2, "d_sae": 128, "k": 4, "fvu": 0.1, "l0": 4.0, "ce_recovered": None},
    ]
