import numpy as np
import pytest
import torch
import zarr

from saeflow.activations import capture_chunk, hook_mean
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


HOOKS = {"h1": "hidden_states.1", "pair": ["hidden_states.2", "hidden_states.0"]}


def tokenized(model_dir, tmp_path):
    tokens = tmp_path / "tokens.parquet"
    tokenize_corpus([Document(str(i), t) for i, t in enumerate(TEXTS)], load_tokenizer(model_dir), 12,
                    tokens, tmp_path / "documents.parquet", tmp_path / "idf.parquet")
    return tokens


def direct_hidden_states(model, token_ids):
    """hidden_states of one sequence run alone, unbatched and unpadded."""
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor(token_ids)[None], output_hidden_states=True).hidden_states
    return [h[0].numpy() for h in hidden]


@pytest.fixture(params=["tiny_lm", "minilm"])
def captured(request, tmp_path):
    """A corpus captured at two hooks in 5 chunks, with batches of 3 sequences."""
    model_dir = request.getfixturevalue(request.param)
    tokens = tokenized(model_dir, tmp_path)
    plan = plan_chunks(sequence_lengths(tokens), 5)
    model = load_model(model_dir)
    paths = {name: [] for name in HOOKS}
    for chunk in plan:
        out = {name: tmp_path / name / f"{chunk.id}.zarr" for name in HOOKS}
        capture_chunk(model, "tiny", tokens, chunk, HOOKS, out, batch_size=3)
        for name in HOOKS:
            paths[name].append(out[name])
    return model, tokens, plan, paths


def stored_rows(paths):
    return np.concatenate([zarr.open_group(str(p), mode="r")["acts"][:] for p in paths]).astype(np.float32)


def test_rows_equal_each_sequence_run_alone(captured):
    model, tokens, plan, paths = captured
    table = read_parquet_columns(tokens, ["seq", "token_id"])
    h1, pair = stored_rows(paths["h1"]), stored_rows(paths["pair"])
    d = model.config.hidden_size
    assert h1.shape == (len(table["seq"]), d) and pair.shape == (len(table["seq"]), 2 * d)
    rng = np.random.default_rng(0)
    for seq in rng.choice(table["seq"].max() + 1, size=6, replace=False):
        rows = np.flatnonzero(table["seq"] == seq)
        hidden = direct_hidden_states(model, table["token_id"][rows])
        np.testing.assert_allclose(h1[rows], hidden[1], rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(pair[rows], np.concatenate([hidden[2], hidden[0]], -1), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("model_fixture", ["tiny_lm", "minilm"])
def test_embedding_and_last_layer_rows_equal_the_direct_forward(model_fixture, request, tmp_path):
    # Layer 0 is the embedding output; the last is what the model reports (after GPT-2's ln_f).
    model_dir = request.getfixturevalue(model_fixture)
    tokens = tokenized(model_dir, tmp_path)
    (chunk,) = plan_chunks(sequence_lengths(tokens), 1)
    model = load_model(model_dir)
    table = read_parquet_columns(tokens, ["seq", "token_id"])
    n = model.config.num_hidden_layers
    hooks = {"first": "hidden_states.0", "last": f"hidden_states.{n}"}
    out = {name: tmp_path / f"{name}.zarr" for name in hooks}
    capture_chunk(model, "m", tokens, chunk, hooks, out, batch_size=4)
    for name, layer in (("first", 0), ("last", n)):
        stored = stored_rows([out[name]])
        for seq in (0, table["seq"].max()):
            rows = np.flatnonzero(table["seq"] == seq)
            np.testing.assert_allclose(stored[rows], direct_hidden_states(model, table["token_id"][rows])[layer],
                                       rtol=2e-3, atol=2e-3)


def test_chunks_partition_the_token_range_with_contract_attrs(captured):
    model, tokens, plan, paths = captured
    for name, spec in HOOKS.items():
        next_start = 0
        for chunk, path in zip(plan, paths[name]):
            group = zarr.open_group(str(path), mode="r")
            assert dict(group.attrs) == {"model": "tiny", "hook": spec, "token_start": next_start, "dtype": "float16"}
            assert group["acts"].dtype == np.float16
            next_start += group["acts"].shape[0]
        assert next_start == len(read_parquet_columns(tokens, ["seq"])["seq"])


def test_float16_overflow_names_the_hook_and_the_fix(tiny_lm, tmp_path):
    tokens = tokenized(tiny_lm, tmp_path)
    (chunk,) = plan_chunks(sequence_lengths(tokens), 1)
    model = load_model(tiny_lm)
    with torch.no_grad():
        model.transformer.wte.weight.mul_(1e6)  # embeddings far beyond float16's 65504
    fix = r"\(float16 overflow: set activations\.dtype to float32\)"
    with pytest.raises(SaeflowError, match=rf"^hooks\.emb: .*hidden_states\.0 {fix}"):
        capture_chunk(model, "m", tokens, chunk, {"emb": "hidden_states.0"}, {"emb": tmp_path / "c.zarr"})
    assert not (tmp_path / "c.zarr").exists()


def test_mean_equals_numpy_mean_over_all_rows(captured, tmp_path):
    paths = captured[3]["pair"]
    rows = np.concatenate([zarr.open_group(str(p), mode="r")["acts"][:] for p in paths]).astype(np.float64)
    hook_mean(paths, tmp_path / "mean.safetensors")
    saved = read_safetensors(tmp_path / "mean.safetensors")
    np.testing.assert_allclose(saved["mean"], rows.mean(axis=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(saved["mean_normalized"], rows.mean(axis=0) / np.linalg.norm(rows.mean(axis=0)), rtol=1e-5)
    assert saved["mean"].dtype == np.float32


def test_nan_and_corrupt_chunks_are_named(tmp_path):
    bad = tmp_path / "chunk-0007.zarr"
    with ZarrChunkWriter(bad, {"token_start": 0}) as store:
        store.create("acts", (4, 3), "float16")[:] = np.array([[0, 1, 2]] * 3 + [[np.nan, 0, 0]])
    with pytest.raises(SaeflowError, match=r"chunk-0007\.zarr: non-finite activation .* row 3"):
        hook_mean([bad], tmp_path / "mean.safetensors")
    (bad / "zarr.json").write_text("{ not json")
    with pytest.raises(SaeflowError, match=r"chunk-0007\.zarr: not a readable Zarr store"):
        hook_mean([bad], tmp_path / "mean.safetensors")
    assert not (tmp_path / "mean.safetensors").exists()
