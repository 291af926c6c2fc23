import numpy as np
import pyarrow as pa
import pytest
import zarr

from saeflow.storage import CsrChunkWriter
from saeflow.units import UnitCriteria, filter_chunk, kept_rows, select_units, thresholds_table

STATS = {
    "feature": np.arange(6),
    "n_active": np.array([10, 0, 50, 5, 20, 10]),
    "density": np.array([0.1, 0.0, 0.5, 0.05, 0.2, 0.1]),
    "max": np.array([2.0, np.nan, 1.0, 9.0, 4.0, 3.0]),
    "mean": np.array([1.0, np.nan, 0.9, 1.0, 1.0, 2.9]),
    "sum": np.array([10.0, 0.0, 45.0, 5.0, 20.0, 29.0]),
}


@pytest.mark.parametrize("criteria, kept", [
    (UnitCriteria(), [0, 2, 3, 4, 5]),  # everything that fires
    (UnitCriteria(min_density=0.1, max_density=0.3), [0, 4, 5]),
    (UnitCriteria(min_max_activation=3.0), [3, 4, 5]),
    (UnitCriteria(min_selectivity=2.0), [0, 3, 4]),  # max / mean
    (UnitCriteria(max_units=2), [2, 5]),  # the two largest sums
    (UnitCriteria(min_max_activation=2.0, max_units=2), [4, 5]),
])
def test_select_units(criteria, kept):
    assert select_units(STATS, criteria).tolist() == kept


@pytest.mark.parametrize("value_dtype", ["float32", "float16"])
def test_filtered_chunk_drops_pruned_units_and_renumbers_kept(tmp_path, value_dtype):
    dense = np.array([[0, 0.5, 0, 0, 2.0, 0], [1.0, 0, 1.5, 0, 0, 0.25], [0, 0, 0, 3.0, 0, 0],
                      [0, 0, 0, 0, 0, 0], [0, 0.75, 0, 0, 0, 0.5]], dtype=np.float32)
    with CsrChunkWriter(tmp_path / "c.zarr", 5, 6, 7, value_dtype) as store:
        row, feature = np.nonzero(dense)
        store.append(np.bincount(row, minlength=5), feature, dense[row, feature])
    kept = np.array([2, 4, 5])
    filter_chunk(tmp_path / "c.zarr", kept, tmp_path / "f.zarr")
    group = zarr.open_group(str(tmp_path / "f.zarr"), mode="r")
    assert dict(group.attrs) == {"format": "csr", "filtered": True, "n_features": 3, "n_tokens": 5, "token_start": 7}
    indptr, indices, values = group["indptr"][:], group["indices"][:], group["values"][:]
    assert (indptr.dtype, indices.dtype, values.dtype) == (np.int64, np.int32, np.dtype(value_dtype))
    assert indptr.tolist() == [0, 1, 3, 3, 3, 4]  # tokens without a kept unit keep their (empty) row
    assert indices.tolist() == [1, 0, 2, 2]  # new ids, ascending within each token
    filtered = np.zeros((5, 3))
    for t in range(5):
        filtered[t, indices[indptr[t] : indptr[t + 1]]] = values[indptr[t] : indptr[t + 1]]
    assert filtered.tolist() == dense[:, kept].tolist()


def test_thresholds_and_detection_keep_only_kept_units():
    percentiles = pa.table({"feature": [0, 1, 2, 3], "p50": [1.0, None, 2.0, 3.0]})
    table = thresholds_table(percentiles, np.array([0, 3]))
    assert table.to_pylist() == [{"unit": 0, "new_unit": 0, "p50": 1.0}, {"unit": 3, "new_unit": 1, "p50": 3.0}]
    detection = pa.table({"unit": [0, 0, 1, 3], "label": ["a", "b", "a", "a"]})
    assert kept_rows(detection, "unit", np.array([0, 3])).column("unit").to_pylist() == [0, 0, 3]
