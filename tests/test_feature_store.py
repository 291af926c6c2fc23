import numpy as np
import pytest
import torch
import zarr

from saeflow import storage
from saeflow.errors import SaeflowError
from saeflow.feature_store import encode_chunk, transpose_store
from saeflow.sae import BatchTopKSAE
from saeflow.storage import ZarrChunkWriter, read_sparse_chunk

D_IN, D_SAE, K = 12, 40, 5


def write_dense_chunk(path, acts, token_start):
    with ZarrChunkWriter(path, {"token_start": token_start, "layer": 1, "dtype": str(acts.dtype)}) as store:
        store.create("acts", acts.shape, acts.dtype, rows_per_chunk=7)[:] = acts


def threshold_sae(seed=0):
    """Biases that make some latents dead, and a positive θ so tokens fire on varying counts."""
    sae = BatchTopKSAE(D_IN, D_SAE, K, seed)
    with torch.no_grad():
        sae.b_enc.copy_(torch.linspace(-4.0, 0.3, D_SAE))
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(seed))
        sae.threshold.fill_(0.8)
    return sae


def numpy_threshold_encoding(sae, x):
    """The contract's threshold encoding, in numpy: pre where pre > θ, else 0."""
    W_enc, b_enc, b_dec, theta = (t.detach().numpy().astype(np.float64)
                                  for t in (sae.W_enc, sae.b_enc, sae.b_dec, sae.threshold))
    pre = (x.astype(np.float64) - b_dec) @ W_enc + b_enc
    return np.where(pre > theta, pre, 0.0)


def dense_of(chunk):
    """The [n_tokens, n_features] matrix a CSR chunk stands for, rebuilt by a plain loop."""
    dense = np.zeros((chunk.n_tokens, chunk.n_features))
    for t in range(chunk.n_tokens):
        entries = slice(chunk.indptr[t], chunk.indptr[t + 1])
        dense[t, chunk.indices[entries]] = chunk.values[entries]
    return dense


@pytest.fixture(params=["float32", "float16"])
def store(tmp_path, request):
    rng = np.random.default_rng(1)
    sae = threshold_sae()
    sizes = [23, 1, 17]  # includes a one-token chunk
    chunks, dense, start = [], [], 0
    for i, n in enumerate(sizes):
        acts = rng.normal(size=(n, D_IN)).astype(np.float16)
        acts[0] = sae.b_dec.detach().numpy()  # pre = b_enc < θ everywhere: a token with no active latent
        write_dense_chunk(tmp_path / f"acts-{i}.zarr", acts, start)
        encode_chunk(sae, tmp_path / f"acts-{i}.zarr", tmp_path / f"chunk-{i:04d}.zarr", request.param)
        chunks.append(tmp_path / f"chunk-{i:04d}.zarr")
        dense.append(numpy_threshold_encoding(sae, acts.astype(np.float32)))
        start += n
    return chunks, np.concatenate(dense), request.param


def test_store_is_csr_of_the_numpy_threshold_encoding(store):
    chunks, dense, value_dtype = store
    tolerance = 1e-5 if value_dtype == "float32" else 2e-3
    start = 0
    for path in chunks:
        group = zarr.open_group(str(path), mode="r")
        indptr, indices, values = group["indptr"][:], group["indices"][:], group["values"][:]
        n = len(indptr) - 1
        assert dict(group.attrs) == {"format": "csr", "n_features": D_SAE, "n_tokens": n, "token_start": start}
        assert (indptr.dtype, indices.dtype, values.dtype) == (np.int64, np.int32, np.dtype(value_dtype))
        assert indptr[0] == 0 and (np.diff(indptr) >= 0).all() and indptr[-1] == len(indices) == len(values)
        assert (values != 0).all()
        for t in range(n):  # ids ascend within each token
            assert (np.diff(indices[indptr[t] : indptr[t + 1]]) > 0).all()
        chunk = read_sparse_chunk(path)
        assert chunk.values.dtype == np.float32 and chunk.token_start == start
        np.testing.assert_allclose(dense_of(chunk), dense[start : start + n], rtol=tolerance, atol=tolerance)
        start += n
    active = (dense > 0).sum(axis=1)
    assert active.min() == 0 and active.max() > K and len(set(active)) > 3  # variable L0, not top-k


@pytest.mark.parametrize("max_entries", [1, 7, 1 << 20])
def test_transpose_equals_the_dense_transpose(store, tmp_path, max_entries):
    chunks, dense, value_dtype = store
    stored = np.concatenate([dense_of(read_sparse_chunk(path)) for path in chunks])
    out = tmp_path / f"by_feature-{max_entries}.zarr"
    transpose_store(chunks, out, D_SAE, max_entries=max_entries)
    group = zarr.open_group(str(out), mode="r")
    indptr, token, value = group["indptr"][:], group["token"][:], group["value"][:]
    assert dict(group.attrs) == {"n_features": D_SAE, "n_tokens": len(dense)}
    assert (indptr.dtype, token.dtype, value.dtype) == (np.int64, np.int64, np.dtype(value_dtype))
    feature, expected_token = np.nonzero(stored.T)  # feature-major, tokens ascending
    assert indptr.tolist() == np.concatenate([[0], np.cumsum(np.bincount(feature, minlength=D_SAE))]).tolist()
    assert token.tolist() == expected_token.tolist()
    assert value.astype(np.float64).tolist() == stored.T[feature, expected_token].tolist()


def write_csr(path, indptr, indices, values, n_features=6, n_tokens=None):
    """A chunk written with the contract's arrays as given, valid or not."""
    n_tokens = len(indptr) - 1 if n_tokens is None else n_tokens
    attrs = {"format": "csr", "n_features": n_features, "n_tokens": n_tokens, "token_start": 0}
    with ZarrChunkWriter(path, attrs) as out:
        out.create("indptr", (len(indptr),), "int64")[:] = indptr
        out.create("indices", (len(indices),), "int32")[:] = indices
        out.create("values", (len(values),), "float32")[:] = values


@pytest.mark.parametrize("indptr, indices, problem", [
    ([0, 2, 3], [1, 4, 2], None),
    ([0, 2, 2], [1, 4, 2], "indptr must rise"),  # ends short of nnz
    ([1, 2, 3], [1, 4, 2], "indptr must rise"),  # does not start at 0
    ([0, 3, 2, 3], [1, 4, 2], "indptr must rise"),  # decreases
    ([0, 2, 3], [1, 6, 2], "feature ids span"),  # id out of range
    ([0, 2, 3], [-1, 4, 2], "feature ids span"),
])
def test_csr_invariants_are_checked_with_the_file_named(tmp_path, indptr, indices, problem):
    path = tmp_path / "chunk-0007.zarr"
    write_csr(path, np.array(indptr), np.array(indices), np.ones(len(indices)))
    if problem is None:
        assert read_sparse_chunk(path).indices.tolist() == indices
    else:
        with pytest.raises(SaeflowError, match=rf"chunk-0007\.zarr: corrupt CSR chunk \({problem}"):
            read_sparse_chunk(path)


def test_an_old_topk_chunk_or_another_sae_is_named(tmp_path):
    with ZarrChunkWriter(tmp_path / "chunk-0002.zarr", {"format": "sparse_topk", "token_start": 0}) as out:
        out.create("indices", (2, 3), "int32")[:] = 0
    with pytest.raises(SaeflowError, match=r"chunk-0002\.zarr: format 'sparse_topk' is not \"csr\""):
        read_sparse_chunk(tmp_path / "chunk-0002.zarr")
    write_csr(tmp_path / "chunk-0003.zarr", np.array([0, 1]), np.array([3]), np.ones(1))
    with pytest.raises(SaeflowError, match=r"chunk-0003\.zarr: n_features is 6 but 40 were expected"):
        transpose_store([tmp_path / "chunk-0003.zarr"], tmp_path / "by_feature.zarr", 40)
    assert not (tmp_path / "by_feature.zarr").exists()


def test_writer_streams_in_whole_zarr_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "CSR_ENTRIES_PER_CHUNK", 4)
    counts = [3, 0, 2, 5, 1]
    indices = [0, 2, 5, 1, 3, 0, 1, 2, 4, 5, 3]
    with storage.CsrChunkWriter(tmp_path / "c.zarr", 5, 6, 10, "float16") as out:
        for a, b in ((0, 2), (2, 4), (4, 5)):  # blocks that end mid Zarr chunk
            lo, hi = sum(counts[:a]), sum(counts[:b])
            out.append(counts[a:b], indices[lo:hi], np.arange(lo, hi) + 1.0)
    chunk = read_sparse_chunk(tmp_path / "c.zarr")
    assert chunk.indptr.tolist() == [0, 3, 3, 5, 10, 11] and chunk.indices.tolist() == indices
    assert chunk.values.tolist() == list(range(1, 12)) and chunk.value_dtype == np.float16
    assert zarr.open_group(str(tmp_path / "c.zarr"), mode="r")["indices"].chunks == (4,)


def test_writer_publishes_nothing_when_tokens_are_missing(tmp_path):
    with pytest.raises(SaeflowError, match="1 tokens with 2 entries written, 3 tokens"):
        with storage.CsrChunkWriter(tmp_path / "c.zarr", 3, 6, 0, "float32") as out:
            out.append([2], [1, 4], [1.0, 2.0])
    assert not (tmp_path / "c.zarr").exists()


def test_nan_chunk_is_named(tmp_path):
    acts = np.zeros((4, D_IN), dtype=np.float16)
    acts[2, 3] = np.inf
    write_dense_chunk(tmp_path / "chunk-0003.zarr", acts, 0)
    with pytest.raises(SaeflowError, match=r"chunk-0003\.zarr: non-finite activation"):
        encode_chunk(threshold_sae(), tmp_path / "chunk-0003.zarr", tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()
