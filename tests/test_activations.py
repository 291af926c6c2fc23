import numpy as np
import pytest
import torch
import zarr

from saeflow.activations import capture_chunk, layer_mean
from saeflow.chunks import plan_chunks, sequence_lengths
from saeflow.corpus import Document
from saeflow.errors import SaeflowError
from saeflow.model import load_model, load_tokenizer
from saeflow.sequences import tokenize_corpus
from saeflow.storage import ZarrChunkWriter, read_parquet_columns, read_safetensors

TEXTS = [
    "The quick brown fox jumps over the lazy dog, again and again, until the dog wakes up.",
    "Sparse autoencoders find features.",
    "Snakemake builds only what is missing or stale, chunk by chunk, layer by layer, and job by job.",
    "x",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 12345 + 678 = 13023. " * 3,
]


@pytest.fixture(params=["tiny_lm", "minilm"])
def captured(request, tmp_path):
    """A corpus captured at a middle layer in chunks of ~40 tokens, with batches of 3 sequences."""
    model_dir = request.getfixturevalue(request.param)
    tokens = tmp_path / "tokens.parquet"
    tokenize_corpus([Document(str(i), t) for i, t in enumerate(TEXTS)], load_tokenizer(model_dir), 12,
                    tokens, tmp_path / "documents.parquet", tmp_path / "idf.parquet")
    plan = plan_chunks(sequence_lengths(tokens), 40)
    model = load_model(model_dir)
    layer = 1
    paths = []
    for chunk in plan:
        paths.append(tmp_path / f"{chunk.id}.zarr")
        capture_chunk(model, str(model_dir), tokens, chunk, layer, paths[-1], batch_size=3)
    return model, tokens, plan, paths, layer


def test_rows_equal_each_sequence_run_alone(captured):
    model, tokens, plan, paths, layer = captured
    table = read_parquet_columns(tokens, ["seq", "token_id"])
    stored = np.concatenate([zarr.open_group(str(p), mode="r")["acts"][:] for p in paths]).astype(np.float32)
    assert stored.shape == (len(table["seq"]), model.config.hidden_size)
    rng = np.random.default_rng(0)
    for seq in rng.choice(table["seq"].max() + 1, size=6, replace=False):
        rows = np.flatnonzero(table["seq"] == seq)
        ids = torch.tensor(table["token_id"][rows], dtype=torch.long)[None]
        with torch.no_grad():
            direct = model(input_ids=ids, output_hidden_states=True).hidden_states[layer][0].numpy()
        np.testing.assert_allclose(stored[rows], direct, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("model_fixture", ["tiny_lm", "minilm"])
def test_embedding_and_last_layer_rows_equal_the_direct_forward(model_fixture, request, tmp_path):
    # Layer 0 is the embedding output; the last is what the model reports (after GPT-2's ln_f).
    model_dir = request.getfixturevalue(model_fixture)
    tokens = tmp_path / "tokens.parquet"
    tokenize_corpus([Document(str(i), t) for i, t in enumerate(TEXTS)], load_tokenizer(model_dir), 12,
                    tokens, tmp_path / "documents.parquet", tmp_path / "idf.parquet")
    (chunk,) = plan_chunks(sequence_lengths(tokens), 10_000)
    model = load_model(model_dir)
    table = read_parquet_columns(tokens, ["seq", "token_id"])
    for layer in (0, model.config.num_hidden_layers):
        path = tmp_path / f"layer-{layer}.zarr"
        capture_chunk(model, str(model_dir), tokens, chunk, layer, path, batch_size=4)
        stored = zarr.open_group(str(path), mode="r")["acts"][:].astype(np.float32)
        for seq in (0, table["seq"].max()):
            rows = np.flatnonzero(table["seq"] == seq)
            ids = torch.tensor(table["token_id"][rows], dtype=torch.long)[None]
            with torch.no_grad():
                direct = model(input_ids=ids, output_hidden_states=True).hidden_states[layer][0].numpy()
            np.testing.assert_allclose(stored[rows], direct, rtol=2e-3, atol=2e-3)


def test_chunks_partition_the_token_range_with_contract_attrs(captured):
    model, tokens, plan, paths, layer = captured
    next_start = 0
    for chunk, path in zip(plan, paths):
        group = zarr.open_group(str(path), mode="r")
        assert group.attrs["token_start"] == next_start
        assert group.attrs["layer"] == layer and group.attrs["dtype"] == "float16"
        assert group["acts"].dtype == np.float16
        next_start += group["acts"].shape[0]
    assert next_start == len(read_parquet_columns(tokens, ["seq"])["seq"])


def test_mean_equals_numpy_mean_over_all_rows(captured, tmp_path):
    _, _, _, paths, _ = captured
    rows = np.concatenate([zarr.open_group(str(p), mode="r")["acts"][:] for p in paths]).astype(np.float64)
    layer_mean(paths, tmp_path / "mean.safetensors")
    saved = read_safetensors(tmp_path / "mean.safetensors")
    np.testing.assert_allclose(saved["mean"], rows.mean(axis=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(saved["mean_normalized"], rows.mean(axis=0) / np.linalg.norm(rows.mean(axis=0)), rtol=1e-5)
    assert saved["mean"].dtype == np.float32


def test_nan_and_corrupt_chunks_are_named(tmp_path):
    bad = tmp_path / "chunk-0007.zarr"
    with ZarrChunkWriter(bad, {"token_start": 0}) as store:
        store.create("acts", (4, 3), "float16")[:] = np.array([[0, 1, 2]] * 3 + [[np.nan, 0, 0]])
    with pytest.raises(SaeflowError, match=r"chunk-0007\.zarr: non-finite activation .* row 3"):
        layer_mean([bad], tmp_path / "mean.safetensors")
    (bad / "zarr.json").write_text("{ not json")
    with pytest.raises(SaeflowError, match=r"chunk-0007\.zarr: not a readable Zarr store"):
        layer_mean([bad], tmp_path / "mean.safetensors")
    assert not (tmp_path / "mean.safetensors").exists()
