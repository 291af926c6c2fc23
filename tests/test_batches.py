import numpy as np
from itertools import islice

from saeflow.batches import batch_source, shuffled_batches
from saeflow.storage import ZarrChunkWriter


def write_chunks(tmp_path, sizes, d=3):
    """Chunks whose rows are their own global row number, so batches reveal where rows came from."""
    paths, start = [], 0
    for i, n in enumerate(sizes):
        rows = np.repeat(np.arange(start, start + n, dtype=np.float32)[:, None], d, axis=1)
        with ZarrChunkWriter(tmp_path / f"chunk-{i:04d}.zarr", {"token_start": start}) as store:
            store.create("acts", rows.shape, "float32")[:] = rows
        paths.append(tmp_path / f"chunk-{i:04d}.zarr")
        start += n
    return paths, start


def test_one_epoch_of_batches_covers_rows_without_repeats_beyond_the_buffer(tmp_path):
    paths, n_rows = write_chunks(tmp_path, [50, 30, 20])
    batches = list(islice(shuffled_batches(paths, batch_size=10, buffer_tokens=25, seed=0), 7))
    seen = np.concatenate([b[:, 0] for b in batches]).astype(int)
    assert all(b.shape == (10, 3) and b.dtype == np.float32 for b in batches)
    assert len(np.unique(seen)) == len(seen)  # 70 rows drawn, none twice within the first epoch
    assert set(seen) <= set(range(n_rows))
    assert sorted(seen) != list(range(70))  # shuffled, not read in order


def test_stream_is_a_function_of_the_seed_and_resumes_at_any_step(tmp_path):
    paths, _ = write_chunks(tmp_path, [40, 40])
    source = batch_source(paths, batch_size=8, buffer_tokens=16, seed=3)
    full = list(islice(source(0), 25))  # crosses epochs
    resumed = list(islice(source(11), 14))
    for a, b in zip(full[11:], resumed):
        np.testing.assert_array_equal(a, b)
    other = next(batch_source(paths, 8, 16, seed=4)(0))
    assert not np.array_equal(other, full[0])
