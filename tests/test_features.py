import numpy as np
import pytest
import torch
import zarr

from saeflow.errors import SaeflowError
from saeflow.features import encode_chunk, transpose_store
from saeflow.sae import BatchTopKSAE
from saeflow.storage import ZarrChunkWriter


def write_dense_chunk(path, acts, token_start):
    with ZarrChunkWriter(path, {"token_start": token_start, "layer": 1, "dtype": str(acts.dtype)}) as store:
        store.create("acts", acts.shape, acts.dtype, rows_per_chunk=7)[:] = acts


def random_sae(d_in=12, d_sae=40, k=5, seed=0):
    sae = BatchTopKSAE(d_in, d_sae, k, seed)
    with torch.no_grad():  # biases that make some latents dead and some rows sparse
        sae.b_enc.copy_(torch.linspace(-4.0, 0.3, d_sae))
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(seed))
    return sae


def numpy_topk(sae, x):
    """The contract's encoding, in numpy: relu((x - b_dec) @ W_enc + b_enc), k largest per token."""
    W_enc, b_enc, b_dec = (t.detach().numpy().astype(np.float64) for t in (sae.W_enc, sae.b_enc, sae.b_dec))
    acts = np.maximum((x.astype(np.float64) - b_dec) @ W_enc + b_enc, 0)
    keep = np.argsort(-acts, axis=1, kind="stable")[:, : sae.k]
    dense = np.zeros_like(acts)
    np.put_along_axis(dense, keep, np.take_along_axis(acts, keep, axis=1), axis=1)
    return dense


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(1)
    sae = random_sae()
    sizes = [23, 1, 17]  # includes a one-token chunk
    chunks, dense, start = [], [], 0
    for i, n in enumerate(sizes):
        acts = rng.normal(size=(n, 12)).astype(np.float16)
        write_dense_chunk(tmp_path / f"acts-{i}.zarr", acts, start)
        encode_chunk(sae, tmp_path / f"acts-{i}.zarr", tmp_path / f"chunk-{i:04d}.zarr")
        chunks.append(tmp_path / f"chunk-{i:04d}.zarr")
        dense.append(numpy_topk(sae, acts.astype(np.float32)))
        start += n
    return sae, chunks, np.concatenate(dense)


def test_store_equals_numpy_topk_of_the_contract_encoding(store):
    sae, chunks, dense = store
    start = 0
    for path in chunks:
        group = zarr.open_group(str(path), mode="r")
        indices, values = group["indices"][:], group["values"][:]
        assert group.attrs["format"] == "sparse_topk" and group.attrs["topk"] == 5
        assert group.attrs["n_features"] == 40 and group.attrs["token_start"] == start
        assert indices.dtype == np.int32 and values.dtype == np.float32 and indices.shape[1] == 5
        assert ((indices == -1) == (values == 0)).all()
        assert ((values > 0).sum(axis=1) <= 5).all()
        rebuilt = np.zeros((len(indices), 40))
        rows, slots = np.nonzero(indices >= 0)
        rebuilt[rows, indices[rows, slots]] = values[rows, slots]
        np.testing.assert_allclose(rebuilt, dense[start : start + len(indices)], rtol=1e-5, atol=1e-5)
        start += len(indices)
    assert (dense > 0).sum(axis=1).max() == 5 and (dense > 0).sum(axis=1).min() < 5  # both cases seen


@pytest.mark.parametrize("max_entries", [1, 7, 1 << 20])
def test_transpose_holds_every_triple_once_sorted(store, tmp_path, max_entries):
    _, chunks, dense = store
    out = tmp_path / f"by_feature-{max_entries}.zarr"
    transpose_store(chunks, out, 40, max_entries=max_entries)
    group = zarr.open_group(str(out), mode="r")
    indptr, token, value = group["indptr"][:], group["token"][:], group["value"][:]
    assert group.attrs["n_features"] == 40 and group.attrs["n_tokens"] == len(dense)
    assert indptr.dtype == np.int64 and token.dtype == np.int64
    for feature in range(40):
        expected_tokens = np.flatnonzero(dense[:, feature] > 0)
        segment = slice(indptr[feature], indptr[feature + 1])
        assert token[segment].tolist() == expected_tokens.tolist()
        np.testing.assert_allclose(value[segment], dense[expected_tokens, feature], rtol=1e-5)
    assert indptr[-1] == (dense > 0).sum()


def test_nan_chunk_is_named(tmp_path):
    acts = np.zeros((4, 12), dtype=np.float16)
    acts[2, 3] = np.inf
    write_dense_chunk(tmp_path / "chunk-0003.zarr", acts, 0)
    with pytest.raises(SaeflowError, match=r"chunk-0003\.zarr: non-finite activation"):
        encode_chunk(random_sae(), tmp_path / "chunk-0003.zarr", tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()
